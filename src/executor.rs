//! The tasks of one shard's executor: accept loop, inbox, flusher, and the graceful
//! shutdown that ends them.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use rustc_hash::FxHashSet;

use crate::config::Config;
use crate::connection::{self, SCRATCH_BYTES};
use crate::metrics::{self, Count, ShardStats};
use crate::notify::LocalNotify;
use crate::router::{Batch, Control};
use crate::routing::ShardId;
use crate::session::SessionConfig;
use crate::shard::{ShardLimits, ShardState};

/// Channel messages drained per wake-up before the inbox lets other tasks run.
const BATCHES_PER_TURN: usize = 64;

/// Batches waiting in a peer's inbox beyond which this shard stops reading sockets.
const MAX_PEER_BACKLOG: usize = 1024;

/// How often a paused reader looks at the peers' inboxes again.
const BACKLOG_POLL: Duration = Duration::from_micros(500);

/// The end of the shutdown grace kept for closing: queues stop draining this much
/// before it (at most a quarter of the grace), so that the last flushes, half-closes and
/// the clients' own closes fit inside `--shutdown-grace`, which is the whole bound.
const CLOSE_SLACK: Duration = Duration::from_millis(250);

/// How long, past the grace, the tasks of sockets shut at its end have to finish.
const TASKS_END: Duration = Duration::from_millis(50);

/// What a shard's tasks share. Lives on one thread (`Rc`), never behind a lock.
pub struct ShardContext {
    /// The shard's state.
    pub state: RefCell<ShardState>,
    /// Server configuration.
    pub config: Arc<Config>,
    /// Session settings derived from it.
    pub session: SessionConfig,
    /// The read buffer every connection of this shard reads into.
    pub scratch: RefCell<Vec<u8>>,
    /// Sockets whose tasks have not both finished.
    pub live: Cell<usize>,
    /// Their descriptors, so that the end of a shutdown can close what is left.
    pub sockets: RefCell<FxHashSet<RawFd>>,
    /// Notified when `live` changes.
    pub live_changed: LocalNotify,
    /// Connections of the whole process (for `--max-connections`; touched only on
    /// accept and close, never on the message path).
    pub connections: Arc<AtomicUsize>,
    /// `--max-connections`, resolved.
    pub max_connections: usize,
    /// Set with `--tls-cert`/`--tls-key`: every connection starts with a TLS handshake.
    pub tls: Option<TlsAcceptor>,
    /// Every shard's inbox (indexed by shard id).
    peers: Vec<flume::Sender<Batch>>,
    /// Accepting connections (`/readyz`); false from the start of a shutdown.
    ready: Cell<bool>,
    /// Set by the flusher when a peer's inbox is deep: readers pause until it drains.
    peers_backlogged: Cell<bool>,
    shutdown_started: LocalNotify,
    /// When a graceful shutdown's grace ends; every socket is closed by then.
    shutdown_ends: Cell<Option<Instant>>,
    /// Never has permits; closed when a shutdown starts, which wakes every task waiting
    /// on it at once (TLS handshakes in progress, which no connection state tracks).
    shutdown_gate: Semaphore,
    flush: Rc<LocalNotify>,
}

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
    /// Shards still draining in a shutdown (touched only at shutdown).
    pub draining: Arc<AtomicUsize>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (shard 0 only).
    pub metrics: Option<SocketAddr>,
    /// TLS on the client port (`--tls-cert`/`--tls-key`), loaded once by the server.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Told the bound addresses (clients, metrics), or why binding failed.
    pub bound: std::sync::mpsc::Sender<std::io::Result<(SocketAddr, Option<SocketAddr>)>>,
}

/// Runs one shard until it has shut down.
pub async fn run_shard(setup: ShardSetup) {
    let (listener, stop_clients) = match crate::listen::bind(setup.addr) {
        Ok(bound) => bound,
        Err(e) => {
            let _ = setup.bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let (metrics_listener, stop_metrics) = match setup.metrics.map(crate::listen::bind).transpose()
    {
        Ok(bound) => bound.unzip(),
        Err(e) => {
            let _ = setup.bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let local = listener
        .local_addr()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if setup
        .bound
        .send(local.map(|addr| (addr, metrics_addr)))
        .is_err()
    {
        return;
    }
    let flush = Rc::new(LocalNotify::default());
    let limits = ShardLimits {
        max_room_members: setup.config.max_room_members,
        max_outbound_bytes: setup.config.max_outbound_bytes,
        close_grace: setup.config.shutdown_grace(),
    };
    let ctx = Rc::new(ShardContext {
        state: RefCell::new(ShardState::new(
            setup.id,
            setup.nr_shards,
            limits,
            flush.clone(),
        )),
        session: SessionConfig::from_config(&setup.config),
        config: setup.config,
        scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
        live: Cell::new(0),
        sockets: RefCell::default(),
        live_changed: LocalNotify::default(),
        connections: setup.connections,
        max_connections: setup.max_connections,
        tls: setup.tls.map(TlsAcceptor::from),
        peers: setup.peers,
        peers_backlogged: Cell::new(false),
        ready: Cell::new(true),
        shutdown_started: LocalNotify::default(),
        shutdown_ends: Cell::new(None),
        shutdown_gate: Semaphore::new(0),
        flush,
    });
    glommio::spawn_local(accept_loop(ctx.clone(), listener)).detach();
    glommio::spawn_local(inbox_loop(ctx.clone(), setup.inbox)).detach();
    glommio::spawn_local(flush_loop(ctx.clone())).detach();
    let http = metrics_listener
        .map(|listener| glommio::spawn_local(crate::http::serve(ctx.clone(), listener)));
    let serves_http = http.is_some();

    ctx.shutdown_started.notified().await;
    ctx.ready.set(false);
    ctx.shutdown_gate.close();
    let grace = ctx.config.shutdown_grace();
    let give_up = Instant::now() + grace;
    let drain_deadline = give_up - CLOSE_SLACK.min(grace / 4);
    ctx.shutdown_ends.set(Some(give_up));
    ctx.state.borrow_mut().begin_shutdown(drain_deadline);
    stop_clients.now();
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

async fn accept_loop(ctx: Rc<ShardContext>, listener: TcpListener) {
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
            Some(Ok(stream)) => connection::spawn(&ctx, stream),
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn inbox_loop(ctx: Rc<ShardContext>, inbox: flume::Receiver<Batch>) {
    while let Ok(first) = inbox.recv_async().await {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(batch) = next {
            let controls = ctx.state.borrow_mut().handle_batch(batch);
            for control in controls {
                match control {
                    Control::Shutdown => ctx.shutdown_started.notify(),
                    Control::Stats(reply) => {
                        let _ = reply.send(ctx.stats(&inbox));
                    }
                }
            }
            handled += 1;
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
        ctx.flush.notified().await;
        let batches = ctx.state.borrow_mut().take_outbox();
        for (dest, batch) in batches {
            metrics::count(Count::CrossShard(batch.len() as u64));
            let peer = &ctx.peers[dest];
            // A peer that already stopped (shutdown) no longer needs its messages.
            let _ = peer.send(batch);
            if peer.len() > MAX_PEER_BACKLOG {
                ctx.peers_backlogged.set(true);
            }
        }
    }
}

impl ShardContext {
    /// Every shard's inbox.
    pub fn peers(&self) -> &[flume::Sender<Batch>] {
        &self.peers
    }

    /// Whether the shard accepts connections (not shutting down).
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    /// The latest a connection closing now may take: `grace` from now, or less if a
    /// graceful shutdown ends sooner.
    pub fn close_deadline(&self, grace: Duration) -> Instant {
        let own = Instant::now() + grace;
        self.shutdown_ends.get().map_or(own, |ends| own.min(ends))
    }

    /// Resolves once the shard has started shutting down (any number of waiters).
    pub async fn shutdown_started(&self) {
        // The gate has no permits: the wait ends only with its close.
        let _ = self.shutdown_gate.acquire(1).await;
    }

    fn stats(&self, inbox: &flume::Receiver<Batch>) -> ShardStats {
        let state = self.state.borrow();
        ShardStats {
            shard: state.id(),
            counters: metrics::snapshot(),
            connections: self.live.get(),
            rooms: state.owned_rooms(),
            inbox_depth: inbox.len(),
        }
    }

    /// Pauses a reader while another shard's inbox is deeper than it can absorb, so
    /// that clients feeding a slower shard meet TCP backpressure instead of growing
    /// its queue without bound. Costs one `Cell` read when nothing is backlogged.
    pub async fn wait_for_peers(&self) {
        if !self.peers_backlogged.get() {
            return;
        }
        while self.peers.iter().any(|p| p.len() > MAX_PEER_BACKLOG / 2) {
            glommio::timer::sleep(BACKLOG_POLL).await;
        }
        self.peers_backlogged.set(false);
    }
}
