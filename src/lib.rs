//! corecast: a thread-per-core broadcast chat server.
//!
//! Layout (one concept per file; ARCHITECTURE in the README follows one message):
//! - `config`: the command line (`--listen`, `--shards`, limits), env fallbacks.
//! - `server`: starts one pinned glommio executor per shard, the channel mesh, stop.
//! - `listen`: the listening sockets: clash and in-use checks, SO_REUSEADDR/PORT.
//! - `executor`: one shard's tasks: accept loop, inbox, flusher, graceful shutdown.
//! - `connection`: a client's reader and writer tasks (after a TLS handshake, if on).
//! - `transport`: a connection's socket, plain TCP or TLS; the TLS writer.
//! - `tls`: `--tls-cert`/`--tls-key` loading, the server handshake, client configs.
//! - `session`: what a connection's requests do (validation, login, dispatch).
//! - `shard`: one shard's state: owned rooms and player ids, local connections and
//!   the room -> local members fan-out index; routing with a local fast path.
//! - `room`: a room's authoritative state and join rules, on its owner shard.
//! - `router`: the cross-shard messages (`ToOwner` requests, `ToMembers` events).
//! - `routing`: `owner_shard(key, nr_shards)`.
//! - `outbound`: a connection's byte-bounded queue of shared frames, `sendmsg` batches.
//! - `limits`: the per-connection token bucket.
//! - `metrics`: per-shard counters (thread-local, no atomics), Prometheus text.
//! - `process`: the process's own /metrics figures (CPU, memory, fds) and build info.
//! - `http`: the metrics/health responder (`/metrics`, `/healthz`, `/readyz`).
//! - `notify`: a single-waiter wake-up for tasks on one shard.
//! - `frame`: u32 length-prefixed framing, pure code over buffers.
//! - `request`: client payload decoding, with a zero-allocation `SendMessage` view.
//! - `response`: server frames, encoded once into shared `Bytes`.
//! - `proto`: the wire messages generated from `proto/corecast.proto`.
//! - `client`: a small blocking client (tests, examples, tools).

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod conn;
pub mod frame;
pub mod metrics;
pub mod notify;
pub mod proto;
pub mod request;
pub mod response;
pub mod server;
pub mod shard;
pub mod tls;
