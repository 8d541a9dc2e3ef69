//! What one shard's tasks share: its state, its settings, its connections' read
//! buffer and counts, its peers' inboxes, and the shutdown signals. Lives on one thread
//! (`Rc`), never behind a lock.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use glommio::sync::Semaphore;
use rustc_hash::FxHashSet;

use crate::config::{Config, SessionConfig};
use crate::metrics::{self, ShardStats};
use crate::notify::LocalNotify;
use crate::shard::messages::Batch;
use crate::shard::outbound::READING_WINDOW;
use crate::shard::routing::ShardId;
use crate::shard::{ShardLimits, ShardState};

/// Size of the read buffer the shard's connections share (`ShardContext::scratch`).
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// Bytes queued on a shard's connections (counting each recipient) after which the
/// task queuing them lets the writers run: a quarter of the default
/// `--max-outbound-bytes`, so a member that keeps reading stays well inside it.
pub const YIELD_AFTER_QUEUED: usize = 256 * 1024;

/// Bytes of frames and payloads that may wait for one shard before senders' readers
/// on the others wait too: a burst crosses between shards at the pace its receiver
/// hands it out, instead of all at once.
const MAX_IN_FLIGHT: usize = 1 << 20;

/// The longest one ingest step waits for members that are behind: a member slower than
/// the room then falls further behind (and is cut at its byte limit) instead of
/// slowing the shard's other rooms for long.
const MAX_INGEST_PAUSE: Duration = Duration::from_millis(20);

/// Batches waiting in a peer's inbox beyond which this shard stops reading sockets.
const MAX_PEER_BACKLOG: usize = 1024;

/// How often a paused reader looks at the peers' inboxes again.
const BACKLOG_POLL: Duration = Duration::from_micros(500);

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
    /// Shared by every shard: whether some shard has a member behind a burst.
    backpressure: Arc<Backpressure>,
}

/// What the shards of one server share to slow their senders down while a member
/// anywhere reads but is behind a burst: until when (microseconds after `epoch`)
/// one was last seen. Written only while members are behind, read once per socket
/// read; a stale mark expires by itself.
#[derive(Debug)]
pub struct Backpressure {
    epoch: Instant,
    behind_until_us: AtomicU64,
    /// Bytes sent to each shard and not yet handled by it.
    in_flight: Vec<AtomicUsize>,
}

impl Backpressure {
    /// For a server of `nr_shards`.
    pub fn new(nr_shards: usize) -> Self {
        Self {
            epoch: Instant::now(),
            behind_until_us: AtomicU64::new(0),
            in_flight: (0..nr_shards).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// A batch of `bytes` went to shard `to`.
    pub fn sent(&self, to: ShardId, bytes: usize) {
        self.in_flight[to].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Shard `at` handled a batch of `bytes`.
    pub fn handled(&self, at: ShardId, bytes: usize) {
        self.in_flight[at].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Whether some shard has more than [`MAX_IN_FLIGHT`] bytes waiting for it.
    pub fn peers_full(&self) -> bool {
        self.in_flight
            .iter()
            .any(|b| b.load(Ordering::Relaxed) > MAX_IN_FLIGHT)
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// A member of some shard was behind and reading at `now`.
    pub fn note_behind(&self, now: Instant, window: Duration) {
        let until = self.micros(now + window);
        self.behind_until_us.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether a member was behind and reading recently.
    pub fn is_behind(&self, now: Instant) -> bool {
        self.behind_until_us.load(Ordering::Relaxed) > self.micros(now)
    }
}

impl ShardContext {
    /// The context of shard `id` of `nr_shards`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ShardId,
        nr_shards: usize,
        config: Arc<Config>,
        peers: Vec<flume::Sender<Batch>>,
        connections: Arc<AtomicUsize>,
        max_connections: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
        backpressure: Arc<Backpressure>,
    ) -> Self {
        let flush = Rc::new(LocalNotify::default());
        let limits = ShardLimits {
            max_room_members: config.max_room_members,
            max_outbound_bytes: config.max_outbound_bytes,
            max_shard_outbound_bytes: config.max_shard_outbound_bytes,
            close_grace: config.shutdown_grace(),
            history: config.history(),
        };
        Self {
            state: RefCell::new(ShardState::new(id, nr_shards, limits, flush.clone())),
            session: SessionConfig::from_config(&config),
            config,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            live: Cell::new(0),
            sockets: RefCell::default(),
            live_changed: LocalNotify::default(),
            connections,
            max_connections,
            tls: tls.map(TlsAcceptor::from),
            peers,
            peers_backlogged: Cell::new(false),
            ready: Cell::new(true),
            shutdown_started: LocalNotify::default(),
            shutdown_ends: Cell::new(None),
            shutdown_gate: Semaphore::new(0),
            flush,
            backpressure,
        }
    }

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

    /// Wakes the flusher (the state's outboxes have batches).
    pub fn flush_wanted(&self) -> &LocalNotify {
        &self.flush
    }

    /// Tells the shard's main task to start a graceful shutdown.
    pub fn request_shutdown(&self) {
        self.shutdown_started.notify();
    }

    /// Waits for [`ShardContext::request_shutdown`] (the shard's main task only).
    pub async fn shutdown_requested(&self) {
        self.shutdown_started.notified().await;
    }

    /// Starts a graceful shutdown that must be over by `ends`: not ready any more,
    /// every waiter on [`ShardContext::shutdown_started`] woken.
    pub fn begin_shutdown(&self, ends: Instant) {
        self.ready.set(false);
        self.shutdown_gate.close();
        self.shutdown_ends.set(Some(ends));
    }

    /// What the shards share to slow their senders down.
    pub fn backpressure(&self) -> &Backpressure {
        &self.backpressure
    }

    /// Marks a peer's inbox as deep: readers pause in [`ShardContext::wait_for_peers`].
    pub fn note_peer_backlog(&self, batches: usize) {
        if batches > MAX_PEER_BACKLOG {
            self.peers_backlogged.set(true);
        }
    }

    /// This shard's figures for `/metrics`.
    pub fn stats(&self, inbox: &flume::Receiver<Batch>) -> ShardStats {
        let state = self.state.borrow();
        ShardStats {
            shard: state.id(),
            counters: metrics::snapshot(),
            connections: self.live.get(),
            rooms: state.owned_rooms(),
            inbox_depth: inbox.len(),
            outbound_bytes: state.outbound_bytes(),
            history_messages: state.retained().0,
            history_bytes: state.retained().1,
        }
    }

    /// Lets the shard's writers run once more than [`YIELD_AFTER_QUEUED`] bytes were
    /// queued on its connections since the last such point: a task that fans frames
    /// out (a sender's reader, the inbox) goes to the back of the run queue, behind the
    /// writers its frames woke. So a burst reaches members' sockets as it arrives
    /// instead of piling up in their queues, and only a member that does not read
    /// falls behind. Costs a thread-local read when little was queued.
    ///
    /// Then ingest waits, a bounded time, for members that read but are behind a
    /// burst: this shard's (`ingest` false: the inbox, which feeds only this shard's
    /// members) or, for a sender's reader (`ingest` true), any shard's, since a
    /// sender's frames reach every shard with members of its room.
    pub async fn let_writers_run(&self, now: Instant, ingest: bool) {
        if crate::shard::outbound::queued_since_yield() >= YIELD_AFTER_QUEUED {
            futures_lite::future::yield_now().await;
        }
        let local = self.state.borrow().has_members_behind();
        let remote = ingest && (self.backpressure.is_behind(now) || self.backpressure.peers_full());
        if !local && !remote {
            return;
        }
        let started = now;
        loop {
            let now = Instant::now();
            let here = self.state.borrow_mut().readers_behind(now);
            if here {
                self.backpressure.note_behind(now, READING_WINDOW);
            }
            let wait = here
                || (ingest && (self.backpressure.is_behind(now) || self.backpressure.peers_full()));
            if !wait || now >= started + MAX_INGEST_PAUSE {
                return;
            }
            glommio::timer::sleep(BACKLOG_POLL).await;
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
