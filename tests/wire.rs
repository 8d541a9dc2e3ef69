//! The exact bytes on the wire, written by hand (no prost on the client side): what a
//! client of the original "mini realtime server" protocol (`package app`, u32 BE
//! length + protobuf) sends and receives.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    payload
}

fn connect(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn login_join_send_byte_for_byte() {
    let server = start();
    let mut s = connect(&server);
    // ClientMessage{login_request(1){player_id(1)="al"}}
    s.write_all(&frame(&[0x0a, 0x04, 0x0a, 0x02, b'a', b'l']))
        .unwrap();
    // ServerMessage{login_response(1){error(1){}}}: error present, code NONE (0, omitted).
    assert_eq!(read_frame(&mut s), vec![0x0a, 0x02, 0x0a, 0x00]);

    // ClientMessage{join_request(2){room_id(1)="r", room_config(2){max_players(1)=3}}}
    s.write_all(&frame(&[
        0x12, 0x07, 0x0a, 0x01, b'r', 0x12, 0x02, 0x08, 0x03,
    ]))
    .unwrap();
    // ServerMessage{join_response(2){room_id="r", current_players=["al"], room_config{3},
    // error{}, epoch(5)=<hex>}}: the v1 fields byte for byte, then v1.1's epoch (last_seq
    // 0 and recovered false are left off, as proto3 does).
    let response = read_frame(&mut s);
    let v1 = [
        0x0a, 0x01, b'r', 0x12, 0x02, b'a', b'l', 0x1a, 0x02, 0x08, 0x03, 0x22, 0x00,
    ];
    assert_eq!(response[0], 0x12);
    assert_eq!(usize::from(response[1]), response.len() - 2);
    assert_eq!(&response[2..2 + v1.len()], &v1);
    let epoch = &response[2 + v1.len()..];
    assert_eq!(epoch[0], 0x2a, "field 5, length-delimited");
    assert_eq!(usize::from(epoch[1]), epoch.len() - 2);
    assert!(
        (1..=32).contains(&(epoch.len() - 2)) && epoch[2..].iter().all(u8::is_ascii_hexdigit),
        "an epoch of at most 32 bytes: {epoch:?}"
    );

    // ClientMessage{send_message(4){room_id(2)="r", body(3)="hi"}}
    s.write_all(&frame(&[
        0x22, 0x07, 0x12, 0x01, b'r', 0x1a, 0x02, b'h', b'i',
    ]))
    .unwrap();
    // ServerMessage{message_notification(6){sender_id="al", room_id="r", body="hi", seq=1}}
    assert_eq!(
        read_frame(&mut s),
        vec![
            0x32, 0x0d, 0x0a, 0x02, b'a', b'l', 0x12, 0x01, b'r', 0x1a, 0x02, b'h', b'i', 0x20,
            0x01
        ]
    );
}

#[test]
fn ping_pong_and_errors_byte_for_byte() {
    let server = start();
    let mut s = connect(&server);
    // ClientMessage{ping(5){nonce(1)=300}} -> ServerMessage{pong(7){nonce=300}}
    s.write_all(&frame(&[0x2a, 0x03, 0x08, 0xac, 0x02]))
        .unwrap();
    assert_eq!(read_frame(&mut s), vec![0x3a, 0x03, 0x08, 0xac, 0x02]);
    // Before login: ClientMessage{leave_request(3){room_id="r"}} -> error(8){code=2, message=...}
    s.write_all(&frame(&[0x1a, 0x03, 0x0a, 0x01, b'r']))
        .unwrap();
    let err = read_frame(&mut s);
    assert_eq!(
        &err[..1],
        &[0x42],
        "ServerMessage field 8, length-delimited"
    );
    assert_eq!(&err[2..4], &[0x08, 0x02], "code FAILED_PRECONDITION");
    // Several frames in one write, and one frame split across writes, are both fine.
    let mut two = frame(&[0x2a, 0x02, 0x08, 0x01]);
    two.extend(frame(&[0x2a, 0x02, 0x08, 0x02]));
    s.write_all(&two).unwrap();
    assert_eq!(read_frame(&mut s), vec![0x3a, 0x02, 0x08, 0x01]);
    assert_eq!(read_frame(&mut s), vec![0x3a, 0x02, 0x08, 0x02]);
    let one = frame(&[0x2a, 0x02, 0x08, 0x03]);
    for byte in &one {
        s.write_all(std::slice::from_ref(byte)).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(read_frame(&mut s), vec![0x3a, 0x02, 0x08, 0x03]);
}
