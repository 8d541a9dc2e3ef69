// The limits that apply to every transport, included by tests/limits.rs (TCP) and
// tests/limits_ws.rs (WebSocket), each of which defines `TRANSPORT` and declares
// `mod common` and the imports.

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
fn undecodable_payload_gets_bad_request_and_is_closed() {
    let server = start_on(TRANSPORT);
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
    let server = start_with_on(
        TRANSPORT,
        Config {
            max_outbound_bytes: 256 * 1024,
            metrics_listen: Some("127.0.0.1:0".into()),
            ..config()
        },
    );
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
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = start_with_on(
        TRANSPORT,
        Config {
            idle_timeout: 1,
            ..config()
        },
    );
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
