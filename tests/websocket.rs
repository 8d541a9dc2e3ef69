//! The WebSocket listener beyond the protocol cases (`tests/protocol_ws.rs` runs those):
//! TCP and WebSocket clients in one room, every bad upgrade, the frame rules and their
//! close codes, pings, limits, shutdown, wss.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use corecast::client::{Client, TlsTrust};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode, ServerMessage};
use prost::Message;

fn ws_server(config: Config) -> TestServer {
    start_with_on(Transport::WebSocket, config)
}

fn ws_addr(server: &TestServer) -> SocketAddr {
    server.server().ws_addr().expect("ws port")
}

/// A raw socket to the WebSocket port, with a read timeout.
fn raw(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(ws_addr(server)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Everything the server sends until it closes (or the read times out).
fn read_all(mut s: &TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A raw, upgraded WebSocket connection (the 101 response read).
fn upgraded(server: &TestServer) -> TcpStream {
    let mut s = raw(server);
    s.write_all(format!("{UPGRADE}\r\n").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "response ended early");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Server frames in `wire`: (opcode, payload).
fn server_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        let opcode = wire[0] & 0x0f;
        let (len, at) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
        out.push((opcode, wire[at..at + len].to_vec()));
        wire = &wire[at + len..];
    }
    out
}

/// The error code of a binary frame holding a ServerMessage error.
fn error_code(payload: &[u8]) -> ErrorCode {
    match ServerMessage::decode(payload).unwrap().data {
        Some(Data::Error(e)) => e.code(),
        other => panic!("not an error: {other:?}"),
    }
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn tcp_and_websocket_members_share_a_room_and_see_one_order() {
    let server = ws_server(common::config());
    let tcp_addr = server.addr;
    let mut members: Vec<Client> = Vec::new();
    for i in 0..6 {
        let mut c = if i % 2 == 0 {
            Client::connect(tcp_addr).unwrap()
        } else {
            Client::connect_ws(ws_addr(&server), "/ws").unwrap()
        };
        c.login(&format!("p{i}"), None).unwrap();
        c.join("mixed", None).unwrap();
        members.push(c);
    }
    // Everyone sends at once, interleaved.
    for round in 0..20 {
        for (i, c) in members.iter_mut().enumerate() {
            c.send_message("mixed", &[], format!("{i}:{round}"))
                .unwrap();
        }
    }
    let orders: Vec<Vec<(u64, String)>> = members
        .iter_mut()
        .map(|c| {
            (0..120)
                .map(|_| {
                    let m = next_message(c);
                    (m.seq, String::from_utf8(m.body.to_vec()).unwrap())
                })
                .collect()
        })
        .collect();
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "one order for TCP and WebSocket members");
    }
    let seqs: Vec<u64> = orders[0].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=120).collect::<Vec<_>>());
}

#[test]
fn bad_upgrades_get_a_clear_http_error_and_never_hurt_others() {
    let server = ws_server(Config {
        ws_allowed_origins: vec!["https://chat.example".into()],
        ..common::config()
    });
    let cases: Vec<(String, &str)> = vec![
        (UPGRADE.replace("GET /ws", "GET /nope"), "404 Not Found"),
        (
            UPGRADE.replace("GET /ws", "POST /ws"),
            "405 Method Not Allowed",
        ),
        (
            UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400 Bad Request",
        ),
        (
            UPGRADE.replace("Upgrade: websocket\r\n", ""),
            "426 Upgrade Required",
        ),
        (
            format!("{UPGRADE}Origin: https://evil.example\r\n"),
            "403 Forbidden",
        ),
        (
            format!("{UPGRADE}X-Pad: {}\r\n", "a".repeat(9000)),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (request, status) in cases {
        let mut s = raw(&server);
        s.write_all(format!("{request}\r\n").as_bytes()).unwrap();
        let response = String::from_utf8_lossy(&read_all(&s)).into_owned();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{status}: {response}"
        );
        assert!(response.contains("Content-Length: "), "{response}");
    }
    // A length-prefixed protobuf client on the WebSocket port: not HTTP.
    let mut s = raw(&server);
    s.write_all(&corecast::client::raw_frame(b"\x0a\x03\x0a\x01a"))
        .unwrap();
    s.write_all(b"\r\n\r\n").unwrap();
    let response = String::from_utf8_lossy(&read_all(&s)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    // The server is fine: a good client logs in and the allowed origin works.
    let mut good = server.connect();
    good.login("ok", None).unwrap();
    let mut s = raw(&server);
    s.write_all(format!("{UPGRADE}Origin: https://chat.example\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[test]
fn a_slowloris_upgrade_gets_408_at_the_login_timeout() {
    let server = ws_server(Config {
        login_timeout: 1,
        ..common::config()
    });
    let started = Instant::now();
    let mut s = raw(&server);
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let response = String::from_utf8_lossy(&read_all(&s)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn text_oversized_and_malformed_messages_get_the_error_then_the_close_code() {
    let server = ws_server(Config {
        max_frame_bytes: 1024,
        ..common::config()
    });
    let cases: Vec<(Vec<u8>, ErrorCode, u16)> = vec![
        (frame(0x1, b"hello"), ErrorCode::BadRequest, 1003),
        (frame(0x2, &[0u8; 2000]), ErrorCode::FrameTooLarge, 1009),
        (vec![0x82, 0x01, 0x00], ErrorCode::BadRequest, 1002), // unmasked
        (frame(0x2, &[0xff, 0xff]), ErrorCode::BadRequest, 1008), // not a ClientMessage
    ];
    for (bad, code, close) in cases {
        let mut s = upgraded(&server);
        s.write_all(&bad).unwrap();
        let frames = server_frames(&read_all(&s));
        assert_eq!(frames.len(), 2, "the error, then the close: {frames:?}");
        assert_eq!((frames[0].0, error_code(&frames[0].1)), (0x2, code));
        assert_eq!((frames[1].0, close_code(&frames[1].1)), (0x8, close));
    }
}

#[test]
fn pings_are_answered_and_a_client_close_is_echoed() {
    let server = ws_server(common::config());
    let mut s = upgraded(&server);
    s.write_all(&frame(0x9, b"are you there")).unwrap();
    let mut pong = [0u8; 15];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong[..2], &[0x8a, 13]);
    assert_eq!(&pong[2..], b"are you there");
    s.write_all(&frame(0x8, &1000u16.to_be_bytes())).unwrap();
    let frames = server_frames(&read_all(&s));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!((frames[0].0, close_code(&frames[0].1)), (0x8, 1000));
}

#[test]
fn shutdown_sends_server_shutting_down_then_close_1001() {
    let server = ws_server(common::config());
    let mut c = server.connect();
    c.login("a", None).unwrap();
    let s = upgraded(&server);
    let s2 = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || read_all(&s2));
    // The raw client is logged out; a login makes it part of the drain like any other.
    server.stop().unwrap();
    let frames = server_frames(&reader.join().unwrap());
    let last = frames.last().expect("a close frame");
    assert_eq!((last.0, close_code(&last.1)), (0x8, 1001));
    let errors: Vec<ErrorCode> = frames
        .iter()
        .filter(|(op, _)| *op == 0x2)
        .map(|(_, p)| error_code(p))
        .collect();
    assert_eq!(errors, [ErrorCode::ServerShuttingDown]);
    drop(s);
    // The logged-in client got the same over its WebSocket.
    assert_error(&mut c, ErrorCode::ServerShuttingDown);
}

#[test]
fn an_idle_websocket_client_is_closed_at_the_idle_timeout() {
    let server = ws_server(Config {
        idle_timeout: 1,
        ..common::config()
    });
    let mut idle = server.connect();
    idle.login("idle", None).unwrap();
    idle.set_timeout(Duration::from_secs(5));
    idle.expect_closed().unwrap();
    // One that pings (WebSocket pings count as traffic) stays open past it.
    let mut s = upgraded(&server);
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pong = [0u8; 2];
    while Instant::now() < until {
        s.write_all(&frame(0x9, b"")).unwrap();
        s.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x8a, 0]);
        // Paced by the server's answers, a round trip each: a few hundred, no sleep.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut nothing = [0u8; 1];
        assert!(
            s.read(&mut nothing).is_err(),
            "nothing else arrives, no close"
        );
    }
}

#[test]
fn over_max_connections_the_upgrade_gets_503() {
    let server = ws_server(Config {
        max_connections: Some(2),
        ..common::config()
    });
    let _a = upgraded(&server);
    let _b = upgraded(&server);
    let s = raw(&server);
    let response = String::from_utf8_lossy(&read_all(&s)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(response.contains("--max-connections"), "{response}");
}

#[test]
fn wss_speaks_the_whole_protocol_over_tls() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let server = ws_server(Config {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..common::config()
    });
    let trust = TlsTrust::ca_der([generated.cert.der().as_ref()]).unwrap();
    let connect = |name: &str| {
        let mut c = Client::connect_wss(ws_addr(&server), "localhost", &trust, "/app").unwrap();
        c.login(name, None).unwrap();
        c.join("secure", None).unwrap();
        c
    };
    let mut a = connect("a");
    let mut b = connect("b");
    a.send_message("secure", &[], "over wss").unwrap();
    assert_eq!(next_message(&mut b).body, "over wss");
    assert_eq!(next_message(&mut a).body, "over wss");
    b.send_message("secure", &["a"], "just you").unwrap();
    assert_eq!(next_message(&mut a).body, "just you");
    a.ping(7).unwrap();
    // A plain TCP client of the same server shares the room.
    let mut tcp = Client::connect_tls(server.addr, "localhost", generated.cert.der()).unwrap();
    tcp.login("t", None).unwrap();
    tcp.join("secure", None).unwrap();
    tcp.send_message("secure", &[], "from tcp").unwrap();
    assert_eq!(next_message(&mut a).body, "from tcp");
}

#[test]
fn the_login_timeout_and_the_rate_limit_apply_over_websocket() {
    let server = ws_server(Config {
        login_timeout: 1,
        max_messages_per_second: 10,
        ..common::config()
    });
    // Upgraded, never logged in: FAILED_PRECONDITION, then close 1008.
    let s = upgraded(&server);
    let frames = server_frames(&read_all(&s));
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(error_code(&frames[0].1), ErrorCode::FailedPrecondition);
    assert_eq!((frames[1].0, close_code(&frames[1].1)), (0x8, 1008));
    // A flood of pings over the limit: RATE_LIMITED once, the connection kept.
    let mut c = server.connect();
    c.login("flood", None).unwrap();
    for nonce in 0..50 {
        c.send(corecast::proto::client_message::Data::Ping(
            corecast::proto::Ping { nonce },
        ))
        .unwrap();
    }
    assert_error(&mut c, ErrorCode::RateLimited);
    let mut other = server.connect();
    other.login("calm", None).unwrap();
    other.ping(1).unwrap();
}
