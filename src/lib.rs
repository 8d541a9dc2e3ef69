//! corecast: a thread-per-core broadcast chat server.
//!
//! Layout, one concept per folder and file (docs/ARCHITECTURE.md follows one message
//! through it, socket to socket):
//! - `config`: the command line (`--listen`, `--shards`, limits), env fallbacks.
//! - `server/`: the process. `mod.rs` starts one pinned glommio executor per shard and
//!   the channel mesh, and stops them; `shard_tasks` is one shard's accept loop, inbox,
//!   flusher and graceful shutdown; `listen` the listening sockets; `http` the
//!   operators' `/metrics`, `/healthz`, `/readyz`.
//! - `conn/`: one client connection. `mod.rs` accepts it (TLS handshake first, if on);
//!   `reader` reads and feeds `driver`, the socket-free protocol driver (framing, order,
//!   rate limit, deadlines; bytes and time passed in); `session` is what each request
//!   does; `writer` drains the outbound queue (plain `sendmsg` or TLS); `transport` is
//!   the socket; `rate_limit` the token bucket.
//! - `shard/`: one shard's state, touched by its thread only. `mod.rs` (`ShardState`)
//!   is the entry point over `owner` (rooms and player ids: decides), `members` (local
//!   connections and the room -> members fan-out index) and `mesh` (outboxes to the
//!   other shards and the local queue); `messages` are the cross-shard enums, `routing`
//!   is `owner_shard`, `room` a room's rules, `history` a room's retained messages
//!   (resume and replay), `outbound` a connection's byte-bounded frame queue, `context`
//!   what a shard's tasks share.
//! - `wire/`: the codec: `frame` (u32 length prefix), `request` (zero-copy views),
//!   `response` (frames encoded once), `proto` (generated); re-exported at the root.
//! - `metrics/`: per-shard counters (thread-local, declared once), Prometheus text;
//!   `process` the process's own figures.
//! - `tls`: certificate loading and the server handshake.
//! - `notify`: a single-waiter wake-up for tasks on one shard.
//! - `client/`: a small blocking client (tests, examples, `corecast-chat`). `mod.rs` is
//!   `Client` and connecting; `requests` the request helpers; `halves` the split
//!   sender and receiver; `inbound` framing and the receive queue; `transport` plain
//!   or TLS; `tls_session` the handshake and shared rustls session; `trust`, `error`.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod config;
pub mod conn;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod shard;
pub mod tls;
pub mod wire;

pub use wire::{frame, proto, request, response};
