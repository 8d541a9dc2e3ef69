//! TLS on the client port (`--tls-cert`/`--tls-key`): a certificate generated at test
//! time, the real server, and the blocking client in its TLS mode.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use corecast::client::{Client, ClientError};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};
use corecast::server::{Server, ServerError};

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
    assert!(matches!(b.split(), Err(ClientError::SplitTls)));
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
        match plain.login("plain", None) {
            Ok(()) => panic!("a plain login succeeded on the TLS port"),
            // The server answers with a TLS alert (not a frame) or just closes.
            Err(ClientError::Timeout) => panic!("the server did not close the connection"),
            Err(_) => {}
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
