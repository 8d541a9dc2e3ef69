//! Starting and stopping the server: one pinned glommio executor per shard, a full
//! mesh of flume channels between them, every shard accepting on the same port.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::executor::{run_shard, ShardSetup};
use crate::router::{Batch, Control, ShardMessage};
use crate::tls::{self, TlsError};

/// Locked memory each executor reserves for io_uring buffers. Sockets do not use it
/// and the machines allow 8 MiB of memlock in all.
const IO_MEMORY: usize = 512 * 1024;

/// io_uring submission entries per ring (glommio's default is 128). The kernel sizes
/// the hash table of armed polls from the ring (CQ entries / 32 buckets), and every
/// cancellation glommio submits (one or two per reactor turn, for its preemption
/// timers) walks a bucket of it. With one armed poll per idle connection, 128 meant
/// 8 buckets: thousands of connections made every reactor turn walk hundreds of
/// entries. 4096 gives 256 buckets for about 3 MiB more per shard (three rings).
const RING_DEPTH: usize = 4096;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `--listen` is not an address.
    #[error("cannot resolve listen address {addr:?}: {reason}")]
    Resolve {
        /// The address given.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// Another process listens on the port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--shards 0` or a bad CPU set.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `--tls-cert`/`--tls-key` are incomplete or unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// glommio refused to start an executor.
    #[error("cannot start shard {shard}: {reason}")]
    Executor {
        /// The shard.
        shard: usize,
        /// glommio's error.
        reason: String,
    },
    /// A shard's thread panicked or failed.
    #[error("shard {shard} failed: {reason}")]
    Shard {
        /// The shard.
        shard: usize,
        /// What happened.
        reason: String,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    peers: Vec<flume::Sender<Batch>>,
    executors: Vec<ExecutorJoinHandle<()>>,
}

impl Server {
    /// Starts every shard and returns once all of them listen.
    pub fn start(config: Config) -> Result<Self, ServerError> {
        let requested = resolve(&config.listen)?;
        let cpus = allowed_cpus();
        let nr_shards = config.shards.unwrap_or(cpus.len());
        if nr_shards == 0 {
            return Err(ServerError::Config("--shards must be at least 1".into()));
        }
        if requested.port() != 0 {
            // glommio always sets SO_REUSEPORT: without this check a second server on
            // the same port would silently take half of the first one's connections.
            std::net::TcpListener::bind(requested).map_err(|source| ServerError::Bind {
                addr: requested,
                source,
            })?;
        }
        // Before any shard starts: a bad certificate fails the start, not each handshake.
        let tls = tls::server_config(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
        if config.auth_token.is_none() {
            tracing::warn!("no --auth-token: every login is accepted (development default)");
        }
        let max_connections = config.max_connections();
        // One descriptor-table resize now rather than one RCU-synchronised resize per
        // doubling while connections arrive (a stall of milliseconds each).
        crate::config::presize_fd_table(max_connections as u64);
        let config = Arc::new(config);
        let connections = Arc::new(AtomicUsize::new(0));
        let draining = Arc::new(AtomicUsize::new(nr_shards));
        let (peers, inboxes): (Vec<_>, Vec<_>) = (0..nr_shards).map(|_| flume::unbounded()).unzip();

        let metrics = config.metrics_listen.as_deref().map(resolve).transpose()?;
        if let Some(addr) = metrics.filter(|a| a.port() != 0) {
            std::net::TcpListener::bind(addr)
                .map_err(|source| ServerError::Bind { addr, source })?;
        }
        let mut server = Server {
            addr: requested,
            metrics_addr: None,
            peers: peers.clone(),
            executors: Vec::new(),
        };
        for (id, inbox) in inboxes.into_iter().enumerate() {
            let (bound_tx, bound_rx) = mpsc::channel();
            let setup = ShardSetup {
                id,
                nr_shards,
                config: config.clone(),
                addr: server.addr,
                inbox,
                peers: peers.clone(),
                connections: connections.clone(),
                max_connections,
                draining: draining.clone(),
                metrics: if id == 0 { metrics } else { None },
                tls: tls.clone(),
                bound: bound_tx,
            };
            let started =
                spawn_executor(&config, id, cpus[id % cpus.len()], setup).and_then(|handle| {
                    server.executors.push(handle);
                    let bound = bound_rx.recv().map_err(|_| ServerError::Shard {
                        shard: id,
                        reason: "exited before listening".into(),
                    })?;
                    bound.map_err(|source| ServerError::Bind {
                        addr: server.addr,
                        source,
                    })
                });
            match started {
                // Port 0: the first shard's port is the one every other shard binds.
                Ok((addr, metrics_addr)) => {
                    server.addr = addr;
                    server.metrics_addr = server.metrics_addr.or(metrics_addr);
                }
                Err(e) => {
                    server.shutdown();
                    let _ = server.wait();
                    return Err(e);
                }
            }
        }
        let security = if tls.is_some() { ", TLS" } else { "" };
        tracing::info!(
            "listening on {} ({} shards{security})",
            server.addr,
            nr_shards
        );
        if let Some(addr) = server.metrics_addr {
            tracing::info!("metrics and health on http://{addr}/metrics, /healthz, /readyz");
        }
        Ok(server)
    }

    /// The bound address (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.peers.len()
    }

    /// Starts a graceful shutdown; [`Server::wait`] returns when it is done.
    pub fn shutdown(&self) {
        for peer in &self.peers {
            let _ = peer.send(vec![ShardMessage::Control(Control::Shutdown)]);
        }
    }

    /// Waits until every shard has stopped.
    pub fn wait(self) -> Result<(), ServerError> {
        let mut result = Ok(());
        for (shard, handle) in self.executors.into_iter().enumerate() {
            if let Err(e) = handle.join() {
                result = Err(ServerError::Shard {
                    shard,
                    reason: e.to_string(),
                });
            }
        }
        result
    }
}

/// Runs the server until `shutdown` receives (or all its senders are dropped), then
/// shuts down gracefully.
pub fn run(config: Config, shutdown: flume::Receiver<()>) -> Result<(), ServerError> {
    let server = Server::start(config)?;
    let _ = shutdown.recv();
    tracing::info!("shutting down");
    server.shutdown();
    server.wait()
}

fn spawn_executor(
    config: &Config,
    id: usize,
    cpu: usize,
    setup: ShardSetup,
) -> Result<ExecutorJoinHandle<()>, ServerError> {
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("corecast-{id}"))
        .io_memory(IO_MEMORY)
        // glommio's default (100 ms) would let a busy shard answer another shard's
        // message up to 100 ms late.
        .preempt_timer(Duration::from_millis(config.preempt_ms.max(1)))
        .ring_depth(RING_DEPTH);
    if config.spin_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_us));
    }
    builder
        .spawn(move || run_shard(setup))
        .map_err(|e| ServerError::Executor {
            shard: id,
            reason: e.to_string(),
        })
}

fn resolve(listen: &str) -> Result<SocketAddr, ServerError> {
    let err = |reason: String| ServerError::Resolve {
        addr: listen.into(),
        reason,
    };
    listen
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

/// CPUs this process may run on (its affinity mask, so `taskset` is respected).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let cpus: Vec<usize> = if ok {
        // SAFETY: CPU_ISSET reads the set we own.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_cpus_is_not_empty() {
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn unresolvable_listen_address_is_an_error_not_a_panic() {
        assert!(matches!(
            resolve("not an address"),
            Err(ServerError::Resolve { .. })
        ));
    }
}
