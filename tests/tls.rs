//! TLS on the client port (`--tls-cert`/`--tls-key`): a certificate generated at test
//! time, the real server, and the blocking client in its TLS mode.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use corecast::client::{Client, ClientError, TlsTrust};
use corecast::config::Config;
use corecast::proto::{client_message, server_message::Data, ErrorCode, SendMessage};
use corecast::server::{Server, ServerError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A self-signed certificate for "localhost", its PEM files in a temporary directory.
struct Certificate {
    der: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn certificate() -> Certificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    Certificate {
        der: generated.cert.der().to_vec(),
        cert,
        key,
        _dir: dir,
    }
}

/// A CA and a server certificate it signed, as a real deployment has them: the CA
/// (`CA:TRUE`, keyCertSign) is what clients trust; the leaf (no CA bit, names
/// "localhost" and 127.0.0.1) and its key are what the server serves. `ca_bundle`
/// holds an unrelated CA first, then the real one: a file of several certificates.
struct CaSigned {
    ca_bundle: PathBuf,
    /// The server's files, for `tls_config`.
    server: Certificate,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, key)
}

fn ca_signed() -> CaSigned {
    ca_signed_by("corecast test CA")
}

fn ca_signed_by(ca_name: &str) -> CaSigned {
    let (ca_params, ca_key) = ca(ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let (other_params, other_key) = ca("some other CA");
    let other_cert = other_params.self_signed(&other_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle = dir.path().join("ca.pem");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server-key.pem");
    std::fs::write(&ca_bundle, other_cert.pem() + &ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    CaSigned {
        ca_bundle,
        server: Certificate {
            der: leaf.der().to_vec(),
            cert,
            key,
            _dir: dir,
        },
    }
}

fn tls_config(cert: &Certificate) -> Config {
    Config {
        tls_cert: Some(cert.cert.clone()),
        tls_key: Some(cert.key.clone()),
        ..config()
    }
}

fn connect(server: &TestServer, cert: &Certificate) -> Client {
    Client::connect_tls(server.addr, "localhost", &cert.der).expect("TLS connect")
}

fn login(server: &TestServer, cert: &Certificate, player: &str) -> Client {
    let mut c = connect(server, cert);
    c.login(player, None).expect("login over TLS");
    c
}

/// TLS clients "a" and "b", logged in, both in `room`.
fn pair_in_room(server: &TestServer, cert: &Certificate, room: &str) -> (Client, Client) {
    let mut a = login(server, cert, "a");
    let mut b = login(server, cert, "b");
    a.join(room, None).unwrap();
    b.join(room, None).unwrap();
    (a, b)
}

/// Two TLS clients in one room: each message reaches both, in order.
fn exchange(a: &mut Client, b: &mut Client, room: &str, body: &[u8]) {
    a.send_message(room, &[], body.to_vec()).unwrap();
    for c in [a, b] {
        assert_eq!(&next_message(c).body[..], body);
    }
}

#[test]
fn a_tls_client_completes_the_whole_protocol() {
    let cert = certificate();
    let server = start_with(tls_config(&cert));
    let mut a = login(&server, &cert, "ann");
    assert!(a.is_tls());
    let joined = a.join("lobby", None).unwrap();
    assert_eq!(joined.current_players, ["ann"]);
    a.send_message("lobby", &[], &b"hello over tls"[..])
        .unwrap();
    let own = next_message(&mut a);
    assert_eq!((&own.body[..], own.seq), (&b"hello over tls"[..], 1));

    let mut b = login(&server, &cert, "ben");
    b.join("lobby", None).unwrap();
    exchange(&mut b, &mut a, "lobby", b"hi ann");
    // Larger than one TLS record (16 KiB), and a burst that the writer batches.
    exchange(&mut a, &mut b, "lobby", &vec![b'x'; 60_000]);
    for i in 0..200u32 {
        a.send_message("lobby", &[], i.to_be_bytes().to_vec())
            .unwrap();
    }
    for c in [&mut a, &mut b] {
        for i in 0..200u32 {
            assert_eq!(&next_message(c).body[..], &i.to_be_bytes());
        }
    }
    b.leave("lobby").unwrap();
    assert!(a.ping(7).unwrap() < Duration::from_secs(5));
    assert!(b.ping(8).is_ok());
    assert_no_messages(&mut b);
}

#[test]
fn a_plain_client_on_the_tls_port_fails_cleanly_and_tls_clients_keep_working() {
    let cert = certificate();
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..tls_config(&cert)
    });
    let (mut a, mut b) = pair_in_room(&server, &cert, "r");
    for attempt in 0..3 {
        let mut plain = server.connect();
        // The server answers the plain client's first bytes with a TLS alert record,
        // which the client recognises instead of reading it as a frame length.
        match plain.login("plain", None) {
            Err(e @ ClientError::TlsExpected { .. }) => {
                let message = e.to_string();
                assert!(message.contains("this port speaks TLS"), "{message}");
                assert!(message.contains("15 03 0"), "an alert record: {message}");
            }
            other => panic!("expected the TLS hint, got {other:?}"),
        }
        exchange(&mut a, &mut b, "r", &[attempt]);
    }
    let http = server.server().metrics_addr().expect("metrics enabled");
    // Counted after the socket closes, so the client can see the close first.
    let series = "corecast_disconnects_total{reason=\"protocol_error\"}";
    eventually(Duration::from_secs(5), || {
        (metric(&http_get(http, "/metrics").1, series) == 3.0).then_some(())
    });
    // A TLS client that does not trust the server's certificate fails its handshake.
    let other = certificate();
    assert!(Client::connect_tls(server.addr, "localhost", &other.der).is_err());
    exchange(&mut b, &mut a, "r", b"still here");
}

#[test]
fn a_client_that_never_completes_the_handshake_is_closed_at_the_login_timeout() {
    let cert = certificate();
    let server = start_with(Config {
        login_timeout: 1,
        metrics_listen: Some("127.0.0.1:0".into()),
        ..tls_config(&cert)
    });
    let mut a = login(&server, &cert, "a");
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the socket, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    // The connection slot is free again and counted as a login timeout.
    let http = server.server().metrics_addr().expect("metrics enabled");
    let metrics = http_get(http, "/metrics").1;
    assert_eq!(
        metric(
            &metrics,
            "corecast_disconnects_total{reason=\"login_timeout\"}"
        ),
        1.0
    );
    assert!(a.ping(1).is_ok());
}

#[test]
fn metrics_count_tls_traffic() {
    let cert = certificate();
    let server = start_with(Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..tls_config(&cert)
    });
    let (mut a, mut b) = pair_in_room(&server, &cert, "r");
    exchange(&mut a, &mut b, "r", b"counted");
    let http = server.server().metrics_addr().expect("metrics enabled");
    let metrics = http_get(http, "/metrics").1;
    assert_eq!(metric(&metrics, "corecast_logins_total"), 2.0);
    assert_eq!(metric(&metrics, "corecast_messages_in_total"), 1.0);
    // The message to both members, and b's join notified to a.
    assert_eq!(metric(&metrics, "corecast_deliveries_total"), 3.0);
    assert_eq!(metric(&metrics, "corecast_connections_accepted_total"), 2.0);
    assert!(metric(&metrics, "corecast_bytes_in_total") > 0.0);
    assert!(metric(&metrics, "corecast_bytes_out_total") > 0.0);
}

#[test]
fn graceful_shutdown_reaches_tls_clients_then_closes_them() {
    let cert = certificate();
    let server = start_with(tls_config(&cert));
    let (a, b) = pair_in_room(&server, &cert, "r");
    assert_graceful_shutdown(server, a, b, 20);
}

#[test]
fn a_shutdown_does_not_wait_for_a_handshake_in_progress() {
    let cert = certificate();
    let server = start_with(Config {
        login_timeout: 30,
        shutdown_grace: 10,
        metrics_listen: Some("127.0.0.1:0".into()),
        ..tls_config(&cert)
    });
    let mut a = login(&server, &cert, "a");
    // Connected, never starts the handshake.
    let silent = TcpStream::connect(server.addr).unwrap();
    let http = server.server().metrics_addr().expect("metrics enabled");
    eventually(Duration::from_secs(5), || {
        let accepted = metric(
            &http_get(http, "/metrics").1,
            "corecast_connections_accepted_total",
        );
        (accepted == 2.0).then_some(())
    });
    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.stop());
    assert_error(&mut a, ErrorCode::ServerShuttingDown);
    a.expect_closed().unwrap();
    drop(a);
    stopping.join().unwrap().expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn a_slow_tls_consumer_is_cut_and_others_keep_going() {
    const MESSAGES: usize = 400;
    let cert = certificate();
    let server = start_with(Config {
        max_outbound_bytes: 64 * 1024,
        ..tls_config(&cert)
    });
    let mut sender = login(&server, &cert, "sender");
    let mut reader = login(&server, &cert, "reader");
    let mut slow = login(&server, &cert, "slow");
    for c in [&mut sender, &mut reader, &mut slow] {
        c.join("r", None).unwrap();
    }
    // The slow client never reads: its socket, rustls' buffer and then its queue fill.
    let body = vec![b's'; 32 * 1024];
    for _ in 0..MESSAGES {
        sender.send_message("r", &["slow"], body.clone()).unwrap();
    }
    let left = sender
        .expect(|d| match d {
            Data::LeaveNotification(n) => Ok(n.player_id),
            other => Err(other),
        })
        .unwrap();
    assert_eq!(left, "slow", "the slow consumer was cut");
    exchange(&mut sender, &mut reader, "r", b"after the cut");
    drop(slow);
}

#[test]
fn over_max_connections_a_tls_client_is_closed_and_the_count_recovers() {
    let cert = certificate();
    let server = start_with(Config {
        max_connections: Some(2),
        ..tls_config(&cert)
    });
    let mut a = login(&server, &cert, "a");
    let b = login(&server, &cert, "b");
    match Client::connect_tls(server.addr, "localhost", &cert.der) {
        Ok(mut third) => match third.login("c", None) {
            Ok(()) => panic!("a third login over --max-connections 2"),
            Err(ClientError::Timeout) => panic!("the server did not close the third client"),
            Err(_) => {}
        },
        Err(ClientError::Timeout) => panic!("the server did not close the third client"),
        Err(_) => {}
    }
    drop(b);
    let mut c = eventually(Duration::from_secs(5), || {
        let mut c = Client::connect_tls(server.addr, "localhost", &cert.der).ok()?;
        c.login("c", None).ok().map(|()| c)
    });
    assert!(c.ping(1).is_ok());
    assert!(a.ping(2).is_ok());
}

#[test]
fn start_fails_with_a_clear_error_for_a_bad_certificate_or_a_missing_key() {
    let cert = certificate();
    let missing = Config {
        tls_cert: Some(cert.cert.with_file_name("missing.pem")),
        ..tls_config(&cert)
    };
    let err = Server::start(missing).err().expect("a missing cert fails");
    assert!(matches!(err, ServerError::Tls(_)), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let swapped = Config {
        tls_cert: Some(cert.key.clone()),
        tls_key: Some(cert.cert.clone()),
        ..config()
    };
    let err = Server::start(swapped)
        .err()
        .expect("a key is not a certificate");
    assert!(matches!(err, ServerError::Tls(_)), "{err}");

    let half = Config {
        tls_key: None,
        ..tls_config(&cert)
    };
    let err = Server::start(half)
        .err()
        .expect("a cert without a key fails");
    assert!(err.to_string().contains("--tls-key"), "{err}");
}

/// A client that trusts a CA file (two certificates: an unrelated CA, then the one
/// that signed the server's certificate) reaches the server by DNS name and by IP
/// address, and its split halves work from two threads over one TLS session: the
/// receiving half blocks in a read while the sending half writes, large messages and
/// bursts both ways.
#[test]
fn a_client_trusting_a_ca_file_works_and_splits() {
    let certs = ca_signed();
    let server = start_with(tls_config(&certs.server));
    let trust = TlsTrust::ca_file(&certs.ca_bundle).expect("two CA certificates load");
    let mut by_ip = Client::connect_tls_with(server.addr, "127.0.0.1", &trust).expect("by IP");
    by_ip.login("ip", None).unwrap();
    assert!(by_ip.ping(1).is_ok());
    drop(by_ip);

    let mut ann = Client::connect_tls_with(server.addr, "localhost", &trust).expect("by name");
    ann.login("ann", None).unwrap();
    ann.join("r", None).unwrap();
    let mut ben = Client::connect_tls_with(server.addr, "localhost", &trust).unwrap();
    ben.login("ben", None).unwrap();
    ben.join("r", None).unwrap();
    ben.set_timeout(Duration::from_secs(20));

    // ann's JoinNotification for ben may already sit in ann's buffers: it moves to the
    // receiving half and comes first.
    let (mut sender, mut receiver) = ann.split().expect("split over TLS");
    const BURST: u32 = 300;
    let big = vec![b'x'; 60_000];
    let (seen_tx, seen) = mpsc::channel();
    let reader = thread::spawn(move || loop {
        match receiver.recv() {
            Ok(msg) => {
                if seen_tx.send(msg.data.expect("data")).is_err() {
                    return ClientError::Timeout;
                }
            }
            Err(e) => return e,
        }
    });
    let first = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("a message");
    assert!(
        matches!(&first, Data::JoinNotification(n) if n.player_id == "ben"),
        "got {first:?}"
    );
    // Both directions at once: ben sends while ann's sending half sends, and ann's
    // receiving half reads both streams.
    let ben_sends = thread::spawn(move || {
        for i in 0..BURST {
            ben.send_message("r", &[], format!("ben {i}")).unwrap();
        }
        ben
    });
    let say = |body: Vec<u8>| {
        client_message::Data::SendMessage(SendMessage {
            target_ids: vec![],
            room_id: "r".into(),
            body: body.into(),
        })
    };
    sender
        .send(say(big.clone()))
        .expect("a message over one TLS record");
    for i in 0..BURST {
        sender.send(say(format!("ann {i}").into_bytes())).unwrap();
    }
    let mut ben = ben_sends.join().unwrap();
    let (mut from_ann, mut from_ben) = (Vec::new(), Vec::new());
    while from_ann.len() < BURST as usize + 1 || from_ben.len() < BURST as usize {
        match seen
            .recv_timeout(Duration::from_secs(20))
            .expect("every message")
        {
            Data::MessageNotification(m) if m.sender_id == "ann" => from_ann.push(m.body),
            Data::MessageNotification(m) if m.sender_id == "ben" => from_ben.push(m.body),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        from_ann[0] == big,
        "the large one first: {} bytes",
        from_ann[0].len()
    );
    for i in 0..BURST as usize {
        assert_eq!(
            from_ann[i + 1],
            format!("ann {i}").as_bytes(),
            "ann's order"
        );
        assert_eq!(from_ben[i], format!("ben {i}").as_bytes(), "ben's order");
    }
    // ben got it too (among his own echoes).
    let from_ann = ben
        .expect(|d| match d {
            Data::MessageNotification(m) if m.sender_id == "ann" => Ok(m.body),
            other => Err(other),
        })
        .unwrap();
    assert!(from_ann == big, "got {} bytes", from_ann.len());
    // close() sends a close_notify and wakes the receiving half, blocked with no
    // timeout; the server tells the room.
    sender.close().expect("close");
    let ended = reader.join().expect("reader thread");
    assert!(matches!(ended, ClientError::Closed), "got {ended:?}");
    let left = ben
        .expect(|d| match d {
            Data::LeaveNotification(n) => Ok(n.player_id),
            other => Err(other),
        })
        .unwrap();
    assert_eq!(left, "ann");
}

/// What `openssl req -x509` makes by default is a CA certificate (`CA:TRUE`); served
/// as the server's own certificate, rustls refuses it (CaUsedAsEndEntity). The error
/// says so and what to do instead.
#[test]
fn a_ca_certificate_served_as_the_leaf_is_explained() {
    let (mut params, key) = ca("localhost");
    params.subject_alt_names = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .subject_alt_names;
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let served = Certificate {
        der: cert.der().to_vec(),
        cert: cert_path,
        key: key_path,
        _dir: dir,
    };
    let server = start_with(tls_config(&served));
    let err = Client::connect_tls(server.addr, "localhost", &served.der)
        .expect_err("rustls refuses a CA certificate as the server's");
    assert!(matches!(err, ClientError::Handshake { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("CaUsedAsEndEntity"), "{message}");
    assert!(message.contains("openssl req -x509"), "{message}");

    // A proper leaf, but signed by a CA the client does not trust: named, with its
    // usual fix.
    let signed = ca_signed();
    let server = start_with(tls_config(&signed.server));
    let other = ca_signed_by("another test CA");
    let trust = TlsTrust::ca_file(&other.ca_bundle).unwrap();
    let err = Client::connect_tls_with(server.addr, "localhost", &trust)
        .expect_err("an untrusted issuer");
    assert!(err.to_string().contains("trust the CA that did"), "{err}");
}

#[test]
fn unusable_ca_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for path in [&missing, &empty] {
        match TlsTrust::ca_file(path) {
            Err(e @ ClientError::CaFile { .. }) => {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}")
            }
            other => panic!("{path:?}: expected CaFile, got {other:?}"),
        }
    }
}

/// Runs `corecast-chat` with these arguments, environment and input (stdin then
/// closed); returns its status, stdout and stderr once it exits, within 20 s.
fn run_chat(args: &[&str], env: &[(&str, &Path)], input: &str) -> (ExitStatus, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corecast-chat"));
    command
        .args(args)
        .env_remove("CORECAST_AUTH_TOKEN")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("corecast-chat starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = done.send((out, err));
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok((out, err)) => (child.wait().expect("exit status"), out, err),
        Err(e) => {
            let _ = child.kill();
            panic!("corecast-chat {args:?} did not exit: {e}");
        }
    }
}

/// corecast-chat over TLS: with `--tls-ca FILE`, and with `--tls` and the system's
/// roots (here replaced by `SSL_CERT_FILE`, as OpenSSL allows); a piped line reaches
/// the room and is echoed before the client exits 0.
#[test]
fn the_chat_client_speaks_tls() {
    let certs = ca_signed();
    let server = start_with(tls_config(&certs.server));
    let addr = server.addr.to_string();
    let trust = TlsTrust::ca_file(&certs.ca_bundle).unwrap();
    let mut watcher = Client::connect_tls_with(server.addr, "localhost", &trust).unwrap();
    watcher.login("watcher", None).unwrap();
    watcher.join("lobby", None).unwrap();

    let ca = certs.ca_bundle.to_str().unwrap();
    let (status, out, err) = run_chat(
        &["--addr", &addr, "--tls-ca", ca, "ann"],
        &[],
        "hello with a CA file\n",
    );
    assert!(status.success(), "stdout {out}\nstderr {err}");
    assert!(out.contains("[lobby] ann: hello with a CA file"), "{out}");
    assert_eq!(
        &next_message(&mut watcher).body[..],
        b"hello with a CA file"
    );

    let localhost = format!("localhost:{}", server.addr.port());
    let (status, out, err) = run_chat(
        &["--addr", &localhost, "--tls", "ben"],
        &[("SSL_CERT_FILE", certs.ca_bundle.as_path())],
        "hello with system roots\n",
    );
    assert!(status.success(), "stdout {out}\nstderr {err}");
    assert!(
        out.contains("[lobby] ben: hello with system roots"),
        "{out}"
    );
    assert_eq!(
        &next_message(&mut watcher).body[..],
        b"hello with system roots"
    );

    // Without the CA, the handshake fails, with what to do about it.
    let (status, _, err) = run_chat(&["--addr", &addr, "--tls", "cat"], &[], "");
    assert!(!status.success());
    assert!(
        err.contains("UnknownIssuer") && err.contains("--tls-ca"),
        "{err}"
    );

    // A plain corecast-chat on the TLS port is told it is one, once.
    let (status, _, err) = run_chat(&["--addr", &addr, "dan"], &[], "hi\n");
    assert!(!status.success());
    assert!(err.contains("this port speaks TLS"), "{err}");
    assert!(err.contains("--tls"), "{err}");
    assert_eq!(err.matches("TLS record").count(), 1, "said once: {err}");
    assert_no_messages_from(&mut watcher, "lobby");
}
