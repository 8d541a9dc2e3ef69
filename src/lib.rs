//! corecast: a thread-per-core broadcast chat server.
//!
//! Layout (one concept per file):
//! - `proto`: the wire messages generated from `proto/corecast.proto`.
//! - `frame`: u32 length-prefixed framing, pure code over buffers.
//! - `request`: client payload decoding, with a zero-allocation `SendMessage` view.
//! - `response`: server frames, encoded once into shared `Bytes`.
//! - `client`: a small blocking client (tests, examples).

pub mod client;
pub mod frame;
pub mod proto;
pub mod request;
pub mod response;
