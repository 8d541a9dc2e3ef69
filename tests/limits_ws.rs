//! The limits of `tests/limits/cases.rs` over WebSocket: an undecodable message, a slow
//! consumer, the idle timeout, each with bystanders that notice nothing.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use corecast::client::{raw_frame, Client, ClientError};
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};

const TRANSPORT: common::Transport = common::Transport::WebSocket;

include!("limits/cases.rs");
