//! Every semantic rule of PROTOCOL.md, through the public client against a real
//! two-shard server, over TCP. `tests/protocol_ws.rs` runs the same cases
//! (`tests/protocol/cases.rs`) over WebSocket.

mod common;

const TRANSPORT: common::Transport = common::Transport::Tcp;

include!("protocol/cases.rs");
