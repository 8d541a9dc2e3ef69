//! A minimal HTTP/1.1 responder for operators, on shard 0's executor (no second
//! runtime): `GET /metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (accepting connections; 503 from the start of a graceful shutdown, so a
//! load balancer drains first). One request per connection, bounded in size and time.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::metrics::{self, ShardStats};
use crate::shard::context::ShardContext;
use crate::shard::messages::{Control, ShardMessage};

/// Largest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a client has to send its request, and a scrape to collect every shard.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves operator requests until the executor stops.
pub async fn serve(ctx: Rc<ShardContext>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(respond(ctx.clone(), stream)).detach();
            }
            // Stopped listening at the end of a shutdown.
            Err(_) if !ctx.is_ready() => return,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn respond(ctx: Rc<ShardContext>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST {
            let _ = stream
                .write_all(&reply(431, "text/plain", "request too large\n"))
                .await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // HEAD is GET without the body (RFC 9110), which probes and `curl -I` send.
    let head_only = method == "HEAD";
    let response = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/metrics") => {
            let stats = collect(&ctx).await;
            let mut text = metrics::render(&stats, ctx.is_ready());
            crate::metrics::process::render(
                &mut text,
                &crate::metrics::process::ProcessStats::read(),
            );
            reply(200, "text/plain; version=0.0.4", &text)
        }
        ("GET" | "HEAD", "/healthz") => reply(200, "text/plain", "ok\n"),
        ("GET" | "HEAD", "/readyz") if ctx.is_ready() => reply(200, "text/plain", "ready\n"),
        ("GET" | "HEAD", "/readyz") => reply(503, "text/plain", "draining\n"),
        ("GET" | "HEAD", _) => reply(
            404,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n",
        ),
        _ => reply(405, "text/plain", "only GET and HEAD\n"),
    };
    let response = if head_only {
        head_of(response)
    } else {
        response
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.close().await;
}

/// Asks every shard for its stats; a shard that does not answer in time is left out.
async fn collect(ctx: &ShardContext) -> Vec<ShardStats> {
    let peers = ctx.peers();
    let (tx, rx) = flume::bounded(peers.len());
    for peer in peers {
        let _ = peer.send(vec![ShardMessage::Control(Control::Stats(tx.clone()))]);
    }
    drop(tx);
    let mut stats = Vec::with_capacity(peers.len());
    let gather = async {
        while let Ok(s) = rx.recv_async().await {
            stats.push(s);
        }
    };
    future::or(gather, glommio::timer::sleep(TIMEOUT)).await;
    stats.sort_by_key(|s| s.shard);
    stats
}

/// The response without its body (the headers keep the body's Content-Length).
fn head_of(mut response: Vec<u8>) -> Vec<u8> {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.truncate(end + 4);
    }
    response
}

fn reply(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
