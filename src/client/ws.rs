//! The client over WebSocket (PROTOCOL.md, "WebSocket"): the upgrade. After it, the
//! connection's [`Reader`] and [`Writer`] become their WebSocket adapters (in
//! `transport.rs`), so the rest of the client (framing, requests, split halves) is the
//! same as over TCP.

use std::io::{self, Read};

use super::transport::{Reader, Writer};

/// What the server answered the upgrade with, when it was not `101`.
fn refused(status_line: &str, body: &str) -> io::Error {
    io::Error::other(format!(
        "WebSocket upgrade refused: {status_line}: {}",
        body.trim()
    ))
}

/// Sends the upgrade request for `path` and reads the `101` answer. Returns the bytes
/// that followed it (the server's first messages, if any).
pub(super) fn handshake(
    stream: &mut Reader,
    writer: &mut Writer,
    host: &str,
    path: &str,
) -> io::Result<Vec<u8>> {
    let key = "Y29yZWNhc3QtY2xpZW50IQ=="; // 16 bytes in base64, as RFC 6455 asks
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: corecast.v1\r\n\r\n"
    );
    writer.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if response.len() > 16 * 1024 {
            return Err(io::Error::other(
                "WebSocket upgrade: response headers too long",
            ));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            let text = String::from_utf8_lossy(&response).into_owned();
            let status = text
                .lines()
                .next()
                .unwrap_or("connection closed")
                .to_string();
            return Err(refused(
                &status,
                text.split("\r\n\r\n").nth(1).unwrap_or(""),
            ));
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.starts_with("HTTP/1.1 101") {
        // The refusal's body says why; read what is there.
        let _ = stream
            .tcp()
            .set_read_timeout(Some(std::time::Duration::from_millis(500)));
        let mut body = response[end..].to_vec();
        let _ = stream.read_to_end(&mut body);
        return Err(refused(&status, &String::from_utf8_lossy(&body)));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if !head.contains(&format!("Sec-WebSocket-Accept: {accept}")) {
        return Err(io::Error::other(
            "WebSocket upgrade: wrong Sec-WebSocket-Accept",
        ));
    }
    Ok(response[end..].to_vec())
}
