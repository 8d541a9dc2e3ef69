//! The bad-input and overload rows of PROTOCOL.md: each limit hit by one client, with
//! a bystander pair checking that nobody else notices. The transport-independent ones
//! (`tests/limits/cases.rs`) also run over WebSocket (`tests/limits_ws.rs`); the
//! WebSocket forms of the others are in `tests/websocket.rs`.

mod common;

const TRANSPORT: common::Transport = common::Transport::Tcp;

include!("limits/cases.rs");

use std::io::Read;
use std::time::Duration;

use common::*;
use corecast::client::{raw_frame, Client, ClientError};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};

#[test]
fn frame_over_the_maximum_gets_frame_too_large_and_is_closed() {
    let server = start_with(Config {
        max_frame_bytes: 1024,
        ..config()
    });
    let (mut a, mut b) = bystanders(&server, "by");
    let mut c = server.login("big");
    // Only the header: the server must not wait for the 1025 announced bytes.
    c.send_raw(&1025u32.to_be_bytes()).unwrap();
    assert_error(&mut c, ErrorCode::FrameTooLarge);
    c.expect_closed().unwrap();
    // Exactly the maximum is fine.
    let mut ok = server.login("max");
    let body = vec![b'x'; 1000];
    ok.join("solo", None).unwrap();
    ok.send_message("solo", &[], body.clone()).unwrap();
    assert_eq!(next_message(&mut ok).body.len(), 1000);
    let mut exact = server.connect();
    exact.send_raw(&raw_frame(&vec![0u8; 1024])[..]).unwrap(); // 1024 zero bytes: field 0 is invalid
    assert_error(&mut exact, ErrorCode::BadRequest);
    assert_bystanders_fine(&mut a, &mut b, "by");
}

#[test]
fn connections_past_the_maximum_get_server_full_and_the_count_recovers() {
    let server = start_with(Config {
        max_connections: Some(3),
        ..config()
    });
    let mut held: Vec<Client> = (0..3).map(|i| server.login(&format!("p{i}"))).collect();
    let mut extra = server.connect();
    assert_error(&mut extra, ErrorCode::ServerFull);
    extra.expect_closed().unwrap();
    // The ones inside keep working.
    held[0].join("r", None).unwrap();
    held[1].join("r", None).unwrap();
    held[0].send_message("r", &[], "hi").unwrap();
    assert_eq!(&next_message(&mut held[1]).body[..], b"hi");
    // One leaves; a new client gets in once the server has noticed.
    drop(held.pop());
    eventually(Duration::from_secs(5), || {
        let mut c = Client::connect(server.addr).ok()?;
        c.set_timeout(Duration::from_secs(2));
        c.login("newcomer", None).ok().map(|_| c)
    });
}

/// Responses count too: a client that keeps sending requests and never reads its
/// responses is cut once its queue is over the limit, instead of growing it forever
/// (with the rate limit off, as fast as the network allows).
#[test]
fn a_client_that_never_reads_its_responses_is_cut_as_a_slow_consumer() {
    use corecast::proto::{client_message, ClientMessage, LoginRequest, Ping};
    use std::io::Write;
    /// Far more responses than the queue limit plus every socket buffer on the way.
    const MAX_BYTES_SENT: usize = 64 << 20;
    let server = start_with(Config {
        max_outbound_bytes: 64 * 1024,
        max_messages_per_second: 0,
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config()
    });
    let (mut a, mut b) = bystanders(&server, "by");
    let http = server.server().metrics_addr().unwrap();
    let cuts = || {
        let scrape = http_get(http, "/metrics").1;
        metric(
            &scrape,
            "corecast_disconnects_total{reason=\"slow_consumer\"}",
        )
    };

    let encode = |data| corecast::frame::encode(&ClientMessage { data: Some(data) });
    let mut pinger = std::net::TcpStream::connect(server.addr).unwrap();
    pinger
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let login = encode(client_message::Data::LoginRequest(LoginRequest {
        player_id: "pinger".into(),
        auth_config: None,
        ..Default::default()
    }));
    pinger.write_all(&login).unwrap();
    let chunk: Vec<u8> = (0..4096u64)
        .flat_map(|nonce| encode(client_message::Data::Ping(Ping { nonce })))
        .collect();
    let mut sent = 0;
    // Writes fail once the server has cut and closed the connection.
    while sent < MAX_BYTES_SENT && pinger.write_all(&chunk).is_ok() {
        sent += chunk.len();
        if sent % (64 * chunk.len()) == 0 && cuts() >= 1.0 {
            break;
        }
    }
    eventually(Duration::from_secs(10), || (cuts() == 1.0).then_some(()));
    assert_bystanders_fine(&mut a, &mut b, "by");
}
