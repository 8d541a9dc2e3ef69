use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(lines: &[&str]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n\r\n");
    text.into_bytes()
}

fn good(path: &str, extra: &[&str]) -> Vec<u8> {
    let get = format!("GET {path} HTTP/1.1");
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let mut lines = vec![
        get.as_str(),
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        key.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    lines.extend_from_slice(extra);
    request(&lines)
}

fn status(buf: &[u8], origins: &[String]) -> u16 {
    match upgrade(buf, origins) {
        Ok(Some(_)) => 101,
        Ok(None) => 0,
        Err(e) => e.status,
    }
}

#[test]
fn a_good_upgrade_is_accepted_with_the_rfc_accept_key_and_the_subprotocol() {
    let mut buf = good("/ws", &["Sec-WebSocket-Protocol: chat, corecast.v1"]);
    let request_len = buf.len();
    buf.extend_from_slice(b"\x82\x80");
    let accepted = upgrade(&buf, &[]).unwrap().unwrap();
    assert_eq!(
        accepted.used, request_len,
        "what follows is the first frame"
    );
    let text = String::from_utf8(accepted.response).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    // RFC 6455, 1.3's example.
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: corecast.v1\r\n"));
    // /app (the original protocol's path) too, and no subprotocol when none is offered.
    let accepted = upgrade(&good("/app?x=1", &[]), &[]).unwrap().unwrap();
    let text = String::from_utf8(accepted.response).unwrap();
    assert!(!text.contains("Sec-WebSocket-Protocol"), "{text}");
}

#[test]
fn bad_upgrades_get_a_clear_http_error() {
    assert_eq!(
        status(b"GET /ws HTTP/1.1\r\nHost: x\r\n", &[]),
        0,
        "incomplete"
    );
    assert_eq!(status(&good("/chat", &[]), &[]), 404);
    let post = String::from_utf8(good("/ws", &[]))
        .unwrap()
        .replacen("GET", "POST", 1);
    assert_eq!(status(post.as_bytes(), &[]), 405);
    let no_upgrade = request(&["GET /ws HTTP/1.1", "Host: x"]);
    assert_eq!(status(&no_upgrade, &[]), 426);
    let old = String::from_utf8(good("/ws", &[]))
        .unwrap()
        .replace("Version: 13", "Version: 8");
    assert_eq!(status(old.as_bytes(), &[]), 426);
    let no_key = String::from_utf8(good("/ws", &[]))
        .unwrap()
        .replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    assert_eq!(status(no_key.as_bytes(), &[]), 400);
    assert_eq!(
        status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", &[]),
        400
    );
    let huge = vec![b'a'; MAX_REQUEST_BYTES];
    let mut long = b"GET /ws HTTP/1.1\r\nX-Pad: ".to_vec();
    long.extend_from_slice(&huge);
    assert_eq!(status(&long, &[]), 431);
    let many: Vec<String> = (0..40).map(|i| format!("X-{i}: y")).collect();
    let mut lines = vec!["GET /ws HTTP/1.1"];
    lines.extend(many.iter().map(String::as_str));
    assert_eq!(status(&request(&lines), &[]), 431);
    // Every refusal is a whole HTTP response that says why.
    let e = upgrade(&good("/chat", &[]), &[]).unwrap_err();
    let text = String::from_utf8(e.response()).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n") && text.contains("use /ws"));
}

#[test]
fn the_origin_allow_list() {
    let allowed = vec!["https://chat.example".to_string()];
    let from = |origin: &str| good("/ws", &[&format!("Origin: {origin}")]);
    assert_eq!(status(&from("https://chat.example"), &allowed), 101);
    assert_eq!(status(&from("https://evil.example"), &allowed), 403);
    assert_eq!(
        status(&from("https://evil.example"), &[]),
        101,
        "no list: any"
    );
    assert_eq!(
        status(&good("/ws", &[]), &allowed),
        101,
        "no Origin: not a browser"
    );
}

/// A masked client frame.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
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

fn prefixed(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn binary_messages_become_length_prefixed_frames_at_any_split() {
    let big = vec![7u8; 70_000];
    let mut wire = frame(0x2, true, b"hello");
    wire.extend(frame(0x2, false, b"frag"));
    wire.extend(frame(0x9, true, b"ping!")); // a ping between fragments is allowed
    wire.extend(frame(0x0, true, b"mented"));
    wire.extend(frame(0x2, true, b""));
    wire.extend(frame(0x2, true, &big));
    let expected = prefixed(&[b"hello", b"fragmented", b"", &big]);
    for split in [1, 2, 3, 7, 100, wire.len()] {
        let mut decoder = Decoder::new(100_000);
        let (mut frames, mut control) = (Vec::new(), Vec::new());
        for chunk in wire.chunks(split) {
            assert_eq!(
                decoder.feed(chunk, &mut frames, &mut control),
                Ok(Fed::More)
            );
        }
        assert_eq!(frames, expected, "split {split}");
        assert_eq!(control, control_frame(Control::Pong, b"ping!"));
    }
}

#[test]
fn bad_frames_say_why_and_pick_the_close_code() {
    let cases: Vec<(Vec<u8>, ErrorCode, u16)> = vec![
        (
            frame(0x1, true, b"hi"),
            ErrorCode::BadRequest,
            close::UNSUPPORTED_DATA,
        ),
        (
            frame(0x2, true, &[0; 65]),
            ErrorCode::FrameTooLarge,
            close::TOO_BIG,
        ),
        (
            [frame(0x2, false, &[0; 40]), frame(0x0, true, &[0; 40])].concat(),
            ErrorCode::FrameTooLarge,
            close::TOO_BIG,
        ),
        (
            vec![0x82, 0x02, b'h', b'i'],
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            frame(0x0, true, b"x"),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            frame(0x2 | 0x40, true, b"x"),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            frame(0x3, true, b"x"),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            frame(0x9, false, b"x"),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            frame(0x9, true, &[0; 126]),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
        (
            [frame(0x2, false, b"a"), frame(0x2, true, b"b")].concat(),
            ErrorCode::BadRequest,
            close::PROTOCOL_ERROR,
        ),
    ];
    for (wire, code, close_code) in cases {
        let mut decoder = Decoder::new(64);
        let e = decoder
            .feed(&wire, &mut Vec::new(), &mut Vec::new())
            .expect_err(&format!("{wire:02x?}"));
        assert_eq!((e.code, e.close), (code, close_code), "{}", e.message);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn a_close_frame_ends_decoding_with_its_code() {
    let mut decoder = Decoder::new(64);
    let mut wire = frame(0x8, true, &1000u16.to_be_bytes());
    wire.extend(frame(0x2, true, b"after"));
    let mut frames = Vec::new();
    assert_eq!(
        decoder.feed(&wire, &mut frames, &mut Vec::new()),
        Ok(Fed::Closed(1000))
    );
    assert!(frames.is_empty());
    let mut decoder = Decoder::new(64);
    assert_eq!(
        decoder.feed(&frame(0x8, true, b""), &mut Vec::new(), &mut Vec::new()),
        Ok(Fed::Closed(1005))
    );
}

#[test]
fn server_headers_and_control_frames() {
    for (len, expected) in [
        (0, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0, 126]),
        (65535, vec![0x82, 126, 0xff, 0xff]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let (header, size) = binary_header(len);
        assert_eq!(&header[..size], expected.as_slice(), "{len}");
    }
    assert_eq!(close_frame(1001), vec![0x88, 2, 0x03, 0xe9]);
    assert_eq!(
        control_frame(Control::Pong, b"ab"),
        vec![0x8a, 2, b'a', b'b']
    );
}
