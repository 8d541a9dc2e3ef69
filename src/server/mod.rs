//! Starting and stopping the server: one pinned glommio executor per shard, a full
//! mesh of flume channels between them, every shard accepting on the same port.

pub mod http;
pub mod listen;
pub mod shard_tasks;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::server::listen::{Endpoint, ListenError};
use crate::server::shard_tasks::{run_shard, ShardSetup};
use crate::shard::messages::{Batch, Control, ShardMessage};
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
    /// `--listen` or `--metrics-listen` is not an address.
    #[error("{flag} {addr:?} is not a usable address: {reason}")]
    Resolve {
        /// The flag that gave it.
        flag: &'static str,
        /// The address given.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// A listener clashes with another, or its address cannot be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// A shard could not bind its listener after the start-up check passed.
    #[error("shard {shard} cannot listen on {addr}: {source}")]
    Bind {
        /// The shard.
        shard: usize,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `--shards 0` or a bad CPU set.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The kernel, a sysctl or a seccomp profile does not allow io_uring.
    #[error("{0}")]
    IoUring(String),
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
    ws_addr: Option<SocketAddr>,
    peers: Vec<flume::Sender<Batch>>,
    executors: Vec<ExecutorJoinHandle<()>>,
}

impl Server {
    /// Starts every shard and returns once all of them listen.
    pub fn start(mut config: Config) -> Result<Self, ServerError> {
        let requested = resolve("--listen", &config.listen)?;
        let metrics = config
            .metrics_listen
            .as_deref()
            .map(|addr| resolve("--metrics-listen", addr))
            .transpose()?;
        let ws = config
            .ws_listen
            .as_deref()
            .map(|addr| resolve("--ws-listen", addr))
            .transpose()?;
        let endpoints: Vec<Endpoint> = [
            Some(("--listen", requested)),
            metrics.map(|a| ("--metrics-listen", a)),
            ws.map(|a| ("--ws-listen", a)),
        ]
        .into_iter()
        .flatten()
        .map(|(flag, addr)| Endpoint { flag, addr })
        .collect();
        listen::check_distinct(&endpoints)?;
        for endpoint in &endpoints {
            listen::check_free(*endpoint)?;
        }
        check_io_uring()?;
        let cpus = allowed_cpus();
        let nr_shards = config.shards.unwrap_or(cpus.len());
        if nr_shards == 0 {
            return Err(ServerError::Config("--shards must be at least 1".into()));
        }
        if nr_shards > cpus.len() {
            tracing::warn!(
                "--shards {nr_shards} on {} CPUs: shards share CPUs, which adds threads and \
                 memory (about 10 MB per shard) but no throughput",
                cpus.len()
            );
        }
        // Before any shard starts: a bad certificate fails the start, not each handshake.
        let tls = tls::server_config(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
        if config
            .auth_token
            .as_ref()
            .is_some_and(|t| t.expose().is_empty())
        {
            // An empty token would admit every login that carries none, silently.
            return Err(ServerError::Config(
                "--auth-token (CORECAST_AUTH_TOKEN) is empty: set a token, or unset it to \
                 accept every login"
                    .into(),
            ));
        }
        if config.verifier.is_none() {
            config.verifier = config
                .jwt_verifier()
                .map_err(ServerError::Config)?
                .map(Arc::new);
        }
        match &config.verifier {
            Some(verifier) => tracing::info!(
                algorithm = ?verifier.algorithm(),
                "logins must carry a signed token (JWT)"
            ),
            None if config.auth_token.is_none() => tracing::warn!(
                "no --auth-token and no --jwt-* key: every login is accepted (development default)"
            ),
            None => {}
        }
        let max_connections = config.max_connections();
        // One descriptor-table resize now rather than one RCU-synchronised resize per
        // doubling while connections arrive (a stall of milliseconds each).
        crate::config::presize_fd_table(max_connections as u64);
        let config = Arc::new(config);
        let connections = Arc::new(AtomicUsize::new(0));
        let draining = Arc::new(AtomicUsize::new(nr_shards));
        let backpressure = Arc::new(crate::shard::context::Backpressure::new(nr_shards));
        let (peers, inboxes): (Vec<_>, Vec<_>) = (0..nr_shards).map(|_| flume::unbounded()).unzip();

        let mut server = Server {
            addr: requested,
            metrics_addr: None,
            ws_addr: ws,
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
                backpressure: backpressure.clone(),
                metrics: if id == 0 { metrics } else { None },
                ws: server.ws_addr,
                tls: tls.clone(),
                bound: bound_tx,
            };
            let started =
                spawn_executor(&config, id, cpus[id % cpus.len()], setup).and_then(|handle| {
                    let Ok(bound) = bound_rx.recv() else {
                        // The executor ended before its shard ran: glommio's own error
                        // (io_uring set-up, most often) is what its thread returned.
                        return Err(ServerError::Executor {
                            shard: id,
                            reason: executor_failure(handle.join()),
                        });
                    };
                    server.executors.push(handle);
                    bound.map_err(|source| ServerError::Bind {
                        shard: id,
                        addr: server.addr,
                        source,
                    })
                });
            match started {
                // Port 0: the first shard's port is the one every other shard binds.
                Ok(bound) => {
                    server.addr = bound.clients;
                    server.metrics_addr = server.metrics_addr.or(bound.metrics);
                    server.ws_addr = bound.ws.or(server.ws_addr);
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
        if let Some(addr) = server.ws_addr {
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            tracing::info!("websocket listening on {addr} ({scheme}://{addr}/ws)");
        }
        if let Some(addr) = server.metrics_addr {
            tracing::info!("metrics and health on http://{addr}/metrics, /healthz, /readyz");
        }
        Ok(server)
    }

    /// The bound address (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where WebSocket clients connect (`--ws-listen`, the real port), if enabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
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

/// What a shard's executor thread said when it ended before starting its shard, with
/// the fix for the failures new deployments meet: io_uring's locked memory, or io_uring
/// not allowed at all.
fn executor_failure(joined: glommio::Result<(), ()>) -> String {
    let reason = match joined {
        Err(e) => e.to_string(),
        Ok(()) => "exited before listening".into(),
    };
    let memlock = reason.contains("MemLockLimit") || reason.contains("Cannot allocate memory");
    if memlock {
        format!(
            "{reason}: the locked-memory limit is too low for io_uring; each shard needs \
             at least {} KiB of it (more as a non-root user: deploy/README.md), so raise it \
             (`ulimit -l`, systemd's LimitMEMLOCK, the container's memlock ulimit)",
            IO_MEMORY / 1024
        )
    } else if reason.contains("Operation not permitted")
        || reason.contains("Function not implemented")
    {
        format!(
            "{reason}: io_uring is not allowed here; check /proc/sys/kernel/io_uring_disabled \
             (must be 0) and the container's seccomp profile (deploy/README.md)"
        )
    } else {
        reason
    }
}

/// Sets up and closes one small io_uring, so that a kernel, sysctl or seccomp profile
/// that forbids it is a clear error here rather than a panic inside glommio (which
/// blames the kernel's age whatever the cause).
fn check_io_uring() -> Result<(), ServerError> {
    // On a thread of its own: tearing a ring down queues task work on the thread that
    // made it, which makes that thread's next blocking socket read with a timeout fail
    // with EINTR (seen in the caller's own client sockets in tests).
    let probe = std::thread::spawn(|| {
        // struct io_uring_params: 120 bytes, all zero asks for the defaults.
        let mut params = [0u8; 120];
        // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) into `params`;
        // the descriptor it returns is ours and closed at once.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
        if fd >= 0 {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
            return Ok(());
        }
        Err(std::io::Error::last_os_error())
    });
    let Ok(Err(error)) = probe.join() else {
        return Ok(());
    };
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    let sysctl = match disabled.as_str() {
        "" | "0" => String::new(),
        value => format!("/proc/sys/kernel/io_uring_disabled is {value} (0 allows it); "),
    };
    Err(ServerError::IoUring(format!(
        "io_uring is not available ({error}): {sysctl}corecast needs io_uring (Linux 5.8 or \
         newer, allowed by the sysctl kernel.io_uring_disabled and by the container's \
         seccomp profile: deploy/README.md)"
    )))
}

fn resolve(flag: &'static str, listen: &str) -> Result<SocketAddr, ServerError> {
    let err = |reason: String| ServerError::Resolve {
        flag,
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
            resolve("--listen", "not an address"),
            Err(ServerError::Resolve { .. })
        ));
    }
}
