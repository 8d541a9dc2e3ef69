//! The bad-input and overload rows of PROTOCOL.md: each limit hit by one client, with
//! a bystander pair checking that nobody else notices.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use corecast::client::{raw_frame, Client, ClientError};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};

/// Two members of a room of their own who exchange a message.
fn bystanders(server: &TestServer, tag: &str) -> (Client, Client) {
    let mut a = server.login(&format!("{tag}-a"));
    let mut b = server.login(&format!("{tag}-b"));
    a.join(tag, None).unwrap();
    b.join(tag, None).unwrap();
    (a, b)
}

fn assert_bystanders_fine(a: &mut Client, b: &mut Client, room: &str) {
    a.send_message(room, &[], "still fine").unwrap();
    assert_eq!(&next_message(b).body[..], b"still fine");
}

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
fn undecodable_payload_gets_bad_request_and_is_closed() {
    let server = start();
    let (mut a, mut b) = bystanders(&server, "by");
    for payload in [
        &[0xffu8, 0xff][..],
        &[0x0a, 0x05, 0x0a][..],
        &[0x22, 0x03, 0x12, 0x01, 0xc3][..],
    ] {
        let mut c = server.connect();
        c.send_raw(&raw_frame(payload)).unwrap();
        assert_error(&mut c, ErrorCode::BadRequest);
        c.expect_closed().unwrap();
    }
    assert_bystanders_fine(&mut a, &mut b, "by");
}

#[test]
fn a_slow_consumer_is_cut_off_and_everyone_else_gets_every_message_in_order() {
    const MESSAGES: u64 = 600;
    /// Readers lag the sender by at most this many messages (128 KiB, under the limit).
    const WINDOW: u64 = 4;
    let server = start_with(Config {
        max_outbound_bytes: 256 * 1024,
        metrics_listen: Some("127.0.0.1:0".into()),
        ..config()
    });
    let mut sender = server.login("sender");
    let mut slow = server.login("slow");
    sender.join("room", None).unwrap();
    slow.join("room", None).unwrap();
    let readers: Vec<Client> = (0..3)
        .map(|i| {
            let mut r = server.login(&format!("reader-{i}"));
            r.join("room", None).unwrap();
            r
        })
        .collect();
    let readers = PacedReaders::spawn(readers, MESSAGES);
    let targets = ["slow", "reader-0", "reader-1", "reader-2"];
    let body = vec![b'm'; 32 * 1024];
    for sent in 0..MESSAGES {
        readers.wait_within(sent, WINDOW);
        sender.send_message("room", &targets, body.clone()).unwrap();
    }
    for seqs in readers.join() {
        assert_eq!(
            seqs,
            (1..=MESSAGES).collect::<Vec<_>>(),
            "every message, in order"
        );
    }
    // The slow member now reads: a prefix of the messages, maybe SLOW_CONSUMER, then EOF.
    slow.set_timeout(Duration::from_secs(10));
    let mut last_seq = 0;
    let mut got_error = false;
    loop {
        match slow.recv() {
            Ok(msg) => match msg.data {
                Some(Data::MessageNotification(m)) => {
                    assert_eq!(m.seq, last_seq + 1, "a gap-free prefix");
                    assert!(!got_error);
                    last_seq = m.seq;
                }
                Some(Data::Error(e)) => {
                    assert_eq!(e.code(), ErrorCode::SlowConsumer);
                    got_error = true;
                }
                Some(Data::JoinNotification(_)) => {
                    assert_eq!(last_seq, 0, "joins came before any message")
                }
                other => panic!("unexpected {other:?}"),
            },
            Err(ClientError::Closed) => break,
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("slow consumer was not disconnected: {e}"),
        }
    }
    assert!(
        last_seq < MESSAGES,
        "the slow consumer was cut before the end"
    );
    // Its departure is a leave like any other.
    sender
        .expect(|d| match d {
            Data::LeaveNotification(n) if n.player_id == "slow" => Ok(()),
            other => Err(other),
        })
        .unwrap();
    // Counted as a slow consumer, not as the end of stream the cut causes; the three
    // readers, whose threads have finished and hung up, are the client closes.
    let http = server.server().metrics_addr().unwrap();
    let series = |reason: &str| format!("corecast_disconnects_total{{reason=\"{reason}\"}}");
    let scrape = eventually(Duration::from_secs(5), || {
        let scrape = http_get(http, "/metrics").1;
        (metric(&scrape, &series("client_closed")) == 3.0).then_some(scrape)
    });
    assert_eq!(metric(&scrape, &series("slow_consumer")), 1.0);
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

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = start_with(Config {
        idle_timeout: 1,
        ..config()
    });
    let mut idle = server.login("idle");
    idle.set_timeout(Duration::from_secs(5));
    let start = std::time::Instant::now();
    idle.expect_closed().expect("closed by the server");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // Raw socket check: the server closed it (EOF), not an error on our side.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw.read(&mut buf).unwrap(), 0);
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
