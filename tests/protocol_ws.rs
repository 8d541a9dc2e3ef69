//! Every semantic rule of PROTOCOL.md over WebSocket: the cases of
//! `tests/protocol.rs` (`tests/protocol/cases.rs`), every client connected to the
//! server's `--ws-listen` port on `/ws`.

mod common;

const TRANSPORT: common::Transport = common::Transport::WebSocket;

include!("protocol/cases.rs");
