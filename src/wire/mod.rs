//! The wire codec: everything that turns bytes into requests and responses into
//! bytes, with no socket and no shard in sight.
//!
//! - [`frame`]: u32 big-endian length prefix, pure code over buffers;
//! - [`request`]: client payloads decoded, `SendMessage` and `LoginRequest` as
//!   zero-copy views of the frame;
//! - [`response`]: server frames, hand-encoded once into shared `Bytes`;
//! - [`proto`]: the messages generated from `proto/corecast.proto`.
//!
//! The four are re-exported at the crate root (`corecast::proto`, ...), the paths
//! clients and tools use.

pub mod frame;
pub mod proto;

/// Longest player id or room id, in bytes (PROTOCOL.md: ids are 1 to 128 bytes of
/// UTF-8).
pub const MAX_ID_BYTES: usize = 128;

pub mod request;
pub mod response;
