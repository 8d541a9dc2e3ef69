//! The tasks of one shard's executor: the accept loop, the inbox, the flusher, the
//! operators' HTTP responder on shard 0, and the graceful shutdown that ends them.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpListener;

use crate::config::Config;
use crate::conn;
use crate::conn::Listener;
use crate::metrics::{self, Count};
use crate::server::{http, listen};
use crate::shard::context::ShardContext;
use crate::shard::messages::{batch_bytes, Batch, Control};
use crate::shard::routing::ShardId;

/// Channel messages drained per wake-up before the inbox lets other tasks run.
const BATCHES_PER_TURN: usize = 64;

/// The end of the shutdown grace kept for closing: queues stop draining this much
/// before it (at most a quarter of the grace), so that the last flushes, half-closes and
/// the clients' own closes fit inside `--shutdown-grace`, which is the whole bound.
const CLOSE_SLACK: Duration = Duration::from_millis(250);

/// How long, past the grace, the tasks of sockets shut at its end have to finish.
const TASKS_END: Duration = Duration::from_millis(50);

/// Everything a shard needs from the thread that starts it.
pub struct ShardSetup {
    /// This shard's index.
    pub id: ShardId,
    /// Number of shards.
    pub nr_shards: usize,
    /// Configuration.
    pub config: Arc<Config>,
    /// Where to listen (port already resolved when it was 0).
    pub addr: SocketAddr,
    /// This shard's inbox.
    pub inbox: flume::Receiver<Batch>,
    /// Every shard's inbox, indexed by shard id.
    pub peers: Vec<flume::Sender<Batch>>,
    /// Process-wide connection count.
    pub connections: Arc<AtomicUsize>,
    /// `--max-connections`, resolved.
    pub max_connections: usize,
    /// Shared by every shard: members behind a burst slow the senders down.
    pub backpressure: Arc<crate::shard::context::Backpressure>,
    /// Shards still draining in a shutdown (touched only at shutdown).
    pub draining: Arc<AtomicUsize>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (shard 0 only).
    pub metrics: Option<SocketAddr>,
    /// TLS on the client port (`--tls-cert`/`--tls-key`), loaded once by the server.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where to accept WebSocket clients (`--ws-listen`; port resolved like `addr`).
    pub ws: Option<SocketAddr>,
    /// Told the bound addresses, or why binding failed.
    pub bound: std::sync::mpsc::Sender<std::io::Result<Bound>>,
}

/// The addresses one shard bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The client port.
    pub clients: SocketAddr,
    /// `/metrics` (shard 0 only).
    pub metrics: Option<SocketAddr>,
    /// The WebSocket port.
    pub ws: Option<SocketAddr>,
}

/// Runs one shard until it has shut down.
pub async fn run_shard(setup: ShardSetup) {
    let (listener, stop_clients) = match listen::bind(setup.addr) {
        Ok(bound) => bound,
        Err(e) => {
            let _ = setup.bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let (metrics_listener, stop_metrics) = match setup.metrics.map(listen::bind).transpose() {
        Ok(bound) => bound.unzip(),
        Err(e) => {
            let _ = setup.bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let (ws_listener, stop_ws) = match setup.ws.map(listen::bind).transpose() {
        Ok(bound) => bound.unzip(),
        Err(e) => {
            let _ = setup.bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let local = listener
        .local_addr()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let bound = local.map(|clients| Bound {
        clients,
        metrics: metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        ws: ws_listener.as_ref().and_then(|l| l.local_addr().ok()),
    });
    if setup.bound.send(bound).is_err() {
        return;
    }
    let ctx = Rc::new(ShardContext::new(
        setup.id,
        setup.nr_shards,
        setup.config,
        setup.peers,
        setup.connections,
        setup.max_connections,
        setup.tls,
        setup.backpressure,
    ));
    glommio::spawn_local(accept_loop(ctx.clone(), listener, Listener::Tcp)).detach();
    if let Some(ws) = ws_listener {
        glommio::spawn_local(accept_loop(ctx.clone(), ws, Listener::WebSocket)).detach();
    }
    glommio::spawn_local(inbox_loop(ctx.clone(), setup.inbox)).detach();
    glommio::spawn_local(flush_loop(ctx.clone())).detach();
    let history = ctx.config.history();
    if history.enabled() && history.ttl > Duration::ZERO {
        glommio::spawn_local(expire_loop(ctx.clone(), history.ttl)).detach();
    }
    let http =
        metrics_listener.map(|listener| glommio::spawn_local(http::serve(ctx.clone(), listener)));
    let serves_http = http.is_some();

    ctx.shutdown_requested().await;
    let grace = ctx.config.shutdown_grace();
    let give_up = Instant::now() + grace;
    let drain_deadline = give_up - CLOSE_SLACK.min(grace / 4);
    ctx.begin_shutdown(give_up);
    stop_clients.now();
    if let Some(stop) = stop_ws {
        stop.now();
    }
    ctx.state.borrow_mut().begin_shutdown(drain_deadline);
    wait_for_sockets(&ctx, give_up).await;
    if ctx.live.get() > 0 {
        // The grace is over: shut what is left, which ends both tasks of each socket
        // (the reader sees the end of the stream, the writer an error) so they drop
        // their sockets now rather than with the executor.
        for &fd in ctx.sockets.borrow().iter() {
            // SAFETY: a socket of a live connection; its task holds it open.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        wait_for_sockets(&ctx, Instant::now() + TASKS_END).await;
    }
    setup.draining.fetch_sub(1, Ordering::AcqRel);
    if serves_http {
        // Keep answering /readyz (503) and /metrics until every shard has drained.
        while setup.draining.load(Ordering::Acquire) > 0 && Instant::now() < give_up {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Some(stop) = stop_metrics {
        stop.now();
    }
    if let Some(http) = http {
        http.cancel().await;
    }
    tracing::debug!(
        shard = ctx.state.borrow().id(),
        left = ctx.live.get(),
        "shard stopped"
    );
}

async fn wait_for_sockets(ctx: &ShardContext, until: Instant) {
    while ctx.live.get() > 0 && Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        future::or(ctx.live_changed.notified(), glommio::timer::sleep(left)).await;
    }
}

async fn accept_loop(ctx: Rc<ShardContext>, listener: TcpListener, kind: Listener) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            ctx.shutdown_started().await;
            None
        })
        .await;
        match accepted {
            // A shutdown has begun (its `StopListening` also fails the armed accept).
            None => return,
            Some(Err(_)) if !ctx.is_ready() => return,
            Some(Ok(stream)) => conn::spawn(&ctx, stream, kind),
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Forgets rooms empty for longer than `--history-ttl` (a join finds an expired room
/// by itself; this returns their memory), checking a few times per TTL.
async fn expire_loop(ctx: Rc<ShardContext>, ttl: Duration) {
    let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let stop = future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                ctx.shutdown_started().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
        ctx.state.borrow_mut().expire_rooms(Instant::now());
    }
}

async fn inbox_loop(ctx: Rc<ShardContext>, inbox: flume::Receiver<Batch>) {
    while let Ok(first) = inbox.recv_async().await {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(batch) = next {
            let bytes = batch_bytes(&batch);
            let controls = ctx.state.borrow_mut().handle_batch(batch);
            ctx.backpressure().handled(ctx.state.borrow().id(), bytes);
            for control in controls {
                match control {
                    Control::Shutdown => ctx.request_shutdown(),
                    Control::Stats(reply) => {
                        let _ = reply.send(ctx.stats(&inbox));
                    }
                }
            }
            handled += 1;
            ctx.let_writers_run(Instant::now(), false).await;
            next = if handled < BATCHES_PER_TURN {
                inbox.try_recv().ok()
            } else {
                None
            };
        }
        glommio::yield_if_needed().await;
    }
}

async fn flush_loop(ctx: Rc<ShardContext>) {
    loop {
        ctx.flush_wanted().notified().await;
        let batches = ctx.state.borrow_mut().take_outbox();
        for (dest, batch) in batches {
            metrics::count(Count::CrossShard(batch.len() as u64));
            ctx.backpressure().sent(dest, batch_bytes(&batch));
            let peer = &ctx.peers()[dest];
            // A peer that already stopped (shutdown) no longer needs its messages.
            let _ = peer.send(batch);
            ctx.note_peer_backlog(peer.len());
        }
    }
}
