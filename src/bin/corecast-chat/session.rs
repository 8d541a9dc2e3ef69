//! The main loop ([`Session`]): it asks the input thread for lines when the chat is
//! ready for one, feeds [`Chat`] the events, performs its [`Action`]s, sends the
//! keepalive pings, reconnects after a drop (with backoff), and quits once what was
//! sent is confirmed.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corecast::client::{Backoff, ClientError, ClientSender};
use corecast::proto::{client_message, server_message::Data, ErrorCode, Ping};

use crate::args::Args;
use crate::chat::{Action, Chat};
use crate::command::{parse_line, Command};
use crate::format::clean;
use crate::net::{ends_for_good, spawn_reconnect, AttemptFailed};
use crate::terminal::Output;
use crate::Event;

/// How long a lost connection's last messages are waited for, after a send failed.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(5);

/// How to reconnect after a drop.
pub(crate) struct Reconnect {
    /// What to connect to and log in as.
    pub(crate) args: Args,
    /// Where the reconnection threads send their events.
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) backoff: Backoff,
    /// Attempts in a row before giving up (0: no limit).
    pub(crate) max_attempts: u32,
}

/// The main loop's state.
pub(crate) struct Session {
    chat: Chat,
    /// The connection's sending half; None while disconnected.
    sender: Option<ClientSender>,
    output: Output,
    /// Asks the input thread for one line, with this prompt.
    ready: mpsc::Sender<String>,
    /// The input thread waits to be asked (it is not reading).
    input_idle: bool,
    /// Input ended or /quit: quit once what was sent is confirmed, or at this time.
    quitting: Option<Instant>,
    /// `--quit-wait`.
    quit_wait: Duration,
    last_sent: Instant,
    keepalive: Option<Duration>,
    /// The current connection's number: events of earlier ones are stale.
    generation: u64,
    /// None: `--no-reconnect`.
    reconnect: Option<Reconnect>,
    /// Disconnected: the next reconnection attempt starts then.
    retry_at: Option<Instant>,
    /// A send failed: the reader's account of the end is awaited until then, when
    /// this sending half is closed (which ends the reader).
    send_failed: Option<(ClientSender, Instant)>,
    /// The server ended the session for good (SESSION_REPLACED, UNAUTHORIZED,
    /// DISCONNECTED): no reconnecting.
    ended_for_good: Option<ErrorCode>,
    /// Lines typed while disconnected, sent once every room is rejoined.
    held: VecDeque<String>,
}

impl Session {
    /// A session that has sent nothing yet, its input thread waiting to be asked.
    pub(crate) fn new(
        chat: Chat,
        sender: ClientSender,
        output: Output,
        ready: mpsc::Sender<String>,
        quit_wait: Duration,
        keepalive: Option<Duration>,
        reconnect: Option<Reconnect>,
    ) -> Self {
        Self {
            chat,
            sender: Some(sender),
            output,
            ready,
            input_idle: true,
            quitting: None,
            quit_wait,
            last_sent: Instant::now(),
            keepalive,
            generation: 0,
            reconnect,
            retry_at: None,
            send_failed: None,
            ended_for_good: None,
            held: VecDeque::new(),
        }
    }

    /// Whether an UNAUTHORIZED that ended a live session (its signed token expired)
    /// is worth a reconnection: with --token-file, the file may hold a fresh token by
    /// now (a reconnection it refuses still ends for good).
    fn may_renew_token(&self, code: ErrorCode) -> bool {
        code == ErrorCode::Unauthorized
            && self
                .reconnect
                .as_ref()
                .is_some_and(|r| r.args.token_file.is_some())
    }

    pub(crate) fn run(
        &mut self,
        room: &str,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<ExitCode> {
        // The first room is joined like any /join, so its answer is printed the same
        // way, and input waits for it.
        let first = self.chat.on_line(&format!("/join {room}"));
        self.perform(first)?;
        loop {
            while self.chat.ready() {
                let Some(line) = self.held.pop_front() else {
                    break;
                };
                let actions = self.chat.on_line(&line);
                self.perform(actions)?;
            }
            if let Some(deadline) = self.quitting {
                if self.chat.settled() && self.held.is_empty() {
                    return Ok(self.quit(ExitCode::SUCCESS));
                }
                if Instant::now() >= deadline {
                    let line = format!(
                        "! quitting with {} message(s) not confirmed by the server",
                        self.chat.unconfirmed + self.held.len()
                    );
                    self.output.print(&line)?;
                    return Ok(self.quit(ExitCode::FAILURE));
                }
            } else if self.input_idle && self.chat.ready() {
                // A closed channel means the input thread has ended: its InputClosed
                // is in the inbox.
                if self.ready.send(self.chat.prompt()).is_ok() {
                    self.input_idle = false;
                }
            }
            let event = match self.next_deadline() {
                Some(deadline) => {
                    match inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(event) => event,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.on_timeout()?;
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            return Ok(self.quit(ExitCode::FAILURE))
                        }
                    }
                }
                None => match inbox.recv() {
                    Ok(event) => event,
                    Err(mpsc::RecvError) => return Ok(self.quit(ExitCode::FAILURE)),
                },
            };
            if let Some(code) = self.on_event(event, inbox)? {
                return Ok(code);
            }
        }
    }

    /// The earliest time something is due: a keepalive ping, the end of the quit
    /// wait, a reconnection attempt, closing after a failed send.
    fn next_deadline(&self) -> Option<Instant> {
        let keepalive = self
            .keepalive
            .filter(|_| self.sender.is_some())
            .map(|every| self.last_sent + every);
        [
            keepalive,
            self.quitting,
            self.retry_at,
            self.send_failed.as_ref().map(|(_, at)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_timeout(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        if self.sender.is_some()
            && self
                .keepalive
                .is_some_and(|every| self.last_sent + every <= now)
        {
            let ping = client_message::Data::Ping(Ping { nonce: 0 });
            self.perform(vec![Action::Send(ping)])?;
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.generation += 1;
            let reconnect = self.reconnect.as_ref().expect("reconnecting");
            spawn_reconnect(&reconnect.args, reconnect.events.clone(), self.generation)?;
        }
        if self.send_failed.as_ref().is_some_and(|(_, at)| *at <= now) {
            if let Some((sender, _)) = self.send_failed.take() {
                // The reader then ends, and says so.
                let _ = sender.close();
            }
        }
        Ok(())
    }

    /// Handles one event; Some: exit with this code.
    fn on_event(
        &mut self,
        event: Event,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<Option<ExitCode>> {
        match event {
            Event::Line(line) => {
                self.input_idle = true;
                if self.chat.ready() {
                    let actions = self.chat.on_line(&line);
                    self.perform(actions)?;
                } else if parse_line(&line) == Ok(Command::Quit) {
                    self.start_quitting();
                } else {
                    // Only a line already being typed when the connection dropped:
                    // input is not read again until the rooms are rejoined.
                    self.held.push_back(line);
                    self.output
                        .print("* not connected: the line will be sent once reconnected")?;
                }
            }
            Event::InputClosed(error) => {
                self.input_idle = false;
                if let Some(error) = error {
                    self.output.print(&format!("! input: {error}"))?;
                }
                self.start_quitting();
            }
            Event::Server(generation, msg) => {
                if generation != self.generation {
                    return Ok(None);
                }
                if let Some(Data::Error(e)) = &msg.data {
                    if ends_for_good(e.code()) && !self.may_renew_token(e.code()) {
                        self.ended_for_good = Some(e.code());
                    }
                }
                let actions = self.chat.receive(msg);
                self.perform(actions)?;
            }
            Event::Disconnected(generation, e) => {
                if generation == self.generation {
                    return self.connection_lost(e, inbox);
                }
            }
            Event::Connected(generation, result) => {
                if generation != self.generation {
                    return Ok(None);
                }
                match result {
                    Ok(sender) => {
                        self.sender = Some(sender);
                        self.last_sent = Instant::now();
                        if let Some(reconnect) = &mut self.reconnect {
                            reconnect.backoff.reset();
                        }
                        self.output.print("* reconnected")?;
                        let actions = self.chat.reconnected();
                        self.perform(actions)?;
                    }
                    Err(AttemptFailed { why, for_good }) => {
                        let why = format!("reconnecting failed: {why}");
                        if for_good {
                            return self.stop(&format!("{why}; not trying again"), inbox);
                        }
                        return self.retry_later(&why, inbox);
                    }
                }
            }
        }
        Ok(None)
    }

    fn perform(&mut self, actions: Vec<Action>) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Send(request) => {
                    // Disconnected: nothing is sent (the chat takes no input then).
                    let Some(sender) = self.sender.as_mut() else {
                        continue;
                    };
                    match sender.send(request) {
                        Ok(()) => self.last_sent = Instant::now(),
                        Err(_) => {
                            // The reader learns of the end too, usually with a better
                            // reason (and perhaps the server's last words first).
                            let sender = self.sender.take().expect("connected");
                            self.send_failed = Some((sender, Instant::now() + LAST_WORDS_WAIT));
                        }
                    }
                }
                Action::Print(line) => self.output.print(&line)?,
                Action::Quit => self.start_quitting(),
            }
        }
        Ok(())
    }

    fn start_quitting(&mut self) {
        if self.quitting.is_none() {
            self.quitting = Some(Instant::now() + self.quit_wait);
        }
    }

    fn quit(&mut self, code: ExitCode) -> ExitCode {
        // Everything is confirmed or given up on: a failure to close changes nothing.
        if let Some(sender) = &self.sender {
            let _ = sender.close();
        }
        code
    }

    /// The current connection ended: reconnect, unless the server ended the session
    /// for good or reconnecting is off.
    fn connection_lost(
        &mut self,
        e: ClientError,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<Option<ExitCode>> {
        self.sender = None;
        self.send_failed = None;
        if let ClientError::ClosedAfterError { code, .. } = &e {
            if ends_for_good(*code) && !self.may_renew_token(*code) {
                self.ended_for_good = Some(*code);
            }
        }
        let why = match e {
            ClientError::Closed => "connection closed by the server".to_string(),
            other => other.to_string(),
        };
        if let Some(code) = self.ended_for_good {
            let because = match code {
                ErrorCode::SessionReplaced => "this player logged in on another connection",
                ErrorCode::Unauthorized => "the server no longer accepts the credentials",
                _ => "the server ended this session",
            };
            return self.stop(
                &format!("disconnected: {why}; not reconnecting: {because}"),
                inbox,
            );
        }
        if self.reconnect.is_none() {
            return self.stop(&format!("disconnected: {why}"), inbox);
        }
        if self.quitting.is_some() && self.chat.settled() && self.held.is_empty() {
            return Ok(Some(ExitCode::SUCCESS));
        }
        self.chat.disconnected();
        self.retry_later(&format!("connection lost: {why}"), inbox)
    }

    /// Schedules the next reconnection attempt, or gives up after the last one.
    fn retry_later(
        &mut self,
        why: &str,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<Option<ExitCode>> {
        let reconnect = self.reconnect.as_mut().expect("reconnecting");
        let attempt = reconnect.backoff.attempts() + 1;
        if reconnect.max_attempts > 0 && attempt > reconnect.max_attempts {
            let line = format!(
                "{why}; giving up after {} reconnection attempt(s)",
                reconnect.max_attempts
            );
            return self.stop(&line, inbox);
        }
        let delay = reconnect.backoff.next_delay();
        let of = match reconnect.max_attempts {
            0 => String::new(),
            max => format!(" of {max}"),
        };
        self.retry_at = Some(Instant::now() + delay);
        let line = format!(
            "* {why}; reconnecting in {} s (attempt {attempt}{of})",
            seconds(delay)
        );
        self.output.print(&clean(&line))?;
        Ok(None)
    }

    /// Says why the session ends (`! ...`) and exits 1. When the line editor is
    /// reading, the terminal is its own until it returns: the user is asked to press
    /// Enter.
    fn stop(
        &mut self,
        why: &str,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<Option<ExitCode>> {
        self.output.print(&clean(&format!("! {why}")))?;
        if matches!(self.output, Output::Editor { .. }) && !self.input_idle {
            self.output.print("(press Enter to exit)")?;
            while let Ok(event) = inbox.recv() {
                if matches!(event, Event::Line(_) | Event::InputClosed(_)) {
                    break;
                }
            }
        }
        Ok(Some(self.quit(ExitCode::FAILURE)))
    }

    /// Waits until every line is printed.
    pub(crate) fn finish(self) {
        self.output.finish();
    }
}

/// A delay as printed: tenths of a second, hundredths below 0.1 s.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 0.1 {
        format!("{secs:.2}")
    } else {
        format!("{secs:.1}")
    }
}
