//! `corecast-chat`: a terminal chat client for a corecast server.
//!
//! Threads: one reads input, one reads server frames, and the main thread owns the
//! chat state and the socket's sending half. When stdin and stdout are a terminal,
//! input comes from a line editor (rustyline: a prompt, editing, history) and every
//! line printed goes through the editor, above the line being typed (a printer thread
//! hands it over, so the main loop never waits for the editor); otherwise input is
//! read as plain lines and output goes straight to stdout.
//!
//! The readers only forward what they read as [`Event`]s, so every decision (what a
//! line means, what a notification prints, which room is current) is made by
//! [`Chat`], a pure state machine that its unit tests drive without a socket.
//!
//! Input is read one line at a time, when the main loop asks for it: not while a join
//! or leave is waiting for its answer. So the first line waits for the first join, and
//! a line after `/join games` goes to games, typed or piped. At the end of input (or
//! `/quit`) the client waits, up to `--quit-wait` seconds, for the server to echo
//! every message it sent, so piped input is delivered before the connection closes.
//!
//! After a drop the session reconnects by itself (unless `--no-reconnect`): each
//! attempt runs on its own thread (connect, log in with `replace_existing`, then read
//! the server as the next connection "generation", so a stale reader's events are
//! told apart), with [`corecast::client::Backoff`] between attempts; the chat then
//! rejoins every room with a resume ([`corecast::client::Resume`]) and says per room
//! what it recovered. Input is not read while disconnected.
//!
//! Layout: `args` is the command line; `command` the input line parser and the
//! command list; `body` the private-message convention in message bodies; `chat/`
//! the state machine ([`Chat`]: what lines do, and `rooms`, the room and member
//! tracking from the server's messages); `format` the printed lines' helpers;
//! `session` the main loop; `terminal` the input (plain lines, or the rustyline editor
//! when on a terminal) and where lines are printed; `net` connecting and the
//! server-reader thread.

mod args;
mod body;
mod chat;
mod command;
mod format;
mod net;
mod session;
mod terminal;

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use corecast::client::{Backoff, ClientError, ClientSender};
use corecast::proto::ServerMessage;

use args::Args;
use chat::Chat;
use net::{connect, explain, spawn_server_reader, AttemptFailed};
use session::{Reconnect, Session};
use terminal::{spawn_editor, spawn_plain_input, Output};

/// What the reader threads hand to the main loop.
enum Event {
    /// One input line, without its line ending.
    Line(String),
    /// Input ended: end of file, Ctrl-D or Ctrl-C at the prompt, or an input error
    /// (its text).
    InputClosed(Option<String>),
    /// One message from the server, on connection number N.
    Server(u64, ServerMessage),
    /// Connection number N ended.
    Disconnected(u64, ClientError),
    /// A reconnection attempt (connection number N) is logged in, or failed.
    Connected(u64, Result<ClientSender, AttemptFailed>),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corecast-chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args)?;
    client
        .login(&args.name, args.token()?.as_deref())
        .map_err(explain)
        .with_context(|| format!("logging in as {}", args.name))?;
    let (sender, receiver) = client.split().context("splitting the connection")?;

    let (events, inbox) = mpsc::channel();
    spawn_server_reader(receiver, events.clone(), 0)?;
    let reconnect = (!args.no_reconnect).then(|| Reconnect {
        args: args.clone(),
        events: events.clone(),
        backoff: Backoff::new(args.reconnect_delay, args.reconnect_max_delay),
        max_attempts: args.reconnect_attempts,
    });
    let (ready, asked) = mpsc::channel();
    let editor = io::stdin().is_terminal() && io::stdout().is_terminal();
    let output = if editor {
        spawn_editor(events, asked)?
    } else {
        spawn_plain_input(events, asked)?;
        Output::Plain(io::stdout())
    };
    let mut session = Session::new(
        Chat::new(&args.name, args.max_frame_bytes),
        sender,
        output,
        ready,
        Duration::from_secs(args.quit_wait),
        (args.keepalive > 0).then(|| Duration::from_secs(args.keepalive)),
        reconnect,
    );
    let code = session.run(&args.room, &inbox);
    session.finish();
    code
}
