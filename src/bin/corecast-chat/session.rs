//! The main loop ([`Session`]): it asks the input thread for lines when the chat is
//! ready for one, feeds [`Chat`] the events, performs its [`Action`]s, sends the
//! keepalive pings, and quits once what was sent is confirmed (or on a lost
//! connection).

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corecast::client::{ClientError, ClientSender};
use corecast::proto::{client_message, Ping};

use crate::chat::{Action, Chat};
use crate::format::clean;
use crate::terminal::Output;
use crate::Event;

/// How long a lost connection's last messages are waited for, after a send failed.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(5);

/// The main loop's state.
pub(crate) struct Session {
    chat: Chat,
    sender: ClientSender,
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
}

/// Why the main loop stops before quitting normally.
enum Stop {
    /// Sending failed: the connection is gone.
    SendFailed(ClientError),
    /// Printing failed.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Fatal(e)
    }
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
    ) -> Self {
        Self {
            chat,
            sender,
            output,
            ready,
            input_idle: true,
            quitting: None,
            quit_wait,
            last_sent: Instant::now(),
            keepalive,
        }
    }

    pub(crate) fn run(
        &mut self,
        room: &str,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<ExitCode> {
        match self.main_loop(room, inbox) {
            Ok(code) => Ok(code),
            Err(Stop::Fatal(e)) => Err(e),
            Err(Stop::SendFailed(e)) => {
                // The reader learns of the end too, usually with a better reason (and
                // perhaps the server's last words first).
                let deadline = Instant::now() + LAST_WORDS_WAIT;
                let mut reason = e;
                while let Ok(event) =
                    inbox.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    match event {
                        Event::Server(msg) => {
                            if let Some(line) = self.chat.on_message(msg) {
                                self.output.print(&line)?;
                            }
                        }
                        Event::Disconnected(e) => {
                            reason = e;
                            break;
                        }
                        Event::Line(_) => self.input_idle = true,
                        Event::InputClosed(_) => self.input_idle = false,
                    }
                }
                self.disconnected(reason, inbox)
            }
        }
    }

    fn main_loop(&mut self, room: &str, inbox: &mpsc::Receiver<Event>) -> Result<ExitCode, Stop> {
        // The first room is joined like any /join, so its answer is printed the same
        // way, and input waits for it.
        let first = self.chat.on_line(&format!("/join {room}"));
        self.perform(first)?;
        loop {
            if let Some(deadline) = self.quitting {
                if self.chat.settled() {
                    return Ok(self.quit(ExitCode::SUCCESS));
                }
                if Instant::now() >= deadline {
                    let line = format!(
                        "! quitting with {} message(s) not confirmed by the server",
                        self.chat.unconfirmed
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
            let now = Instant::now();
            let keepalive = self
                .keepalive
                .map(|every| (self.last_sent + every).saturating_duration_since(now));
            let quitting = self.quitting.map(|d| d.saturating_duration_since(now));
            let wait = match (keepalive, quitting) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let event = match wait {
                Some(wait) => match inbox.recv_timeout(wait) {
                    Ok(event) => event,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self
                            .keepalive
                            .is_some_and(|every| self.last_sent.elapsed() >= every)
                        {
                            let ping = client_message::Data::Ping(Ping { nonce: 0 });
                            self.perform(vec![Action::Send(ping)])?;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Ok(self.quit(ExitCode::FAILURE))
                    }
                },
                None => match inbox.recv() {
                    Ok(event) => event,
                    Err(mpsc::RecvError) => return Ok(self.quit(ExitCode::FAILURE)),
                },
            };
            match event {
                Event::Line(line) => {
                    self.input_idle = true;
                    let actions = self.chat.on_line(&line);
                    self.perform(actions)?;
                }
                Event::InputClosed(error) => {
                    self.input_idle = false;
                    if let Some(error) = error {
                        self.output.print(&format!("! input: {error}"))?;
                    }
                    self.start_quitting();
                }
                Event::Server(msg) => {
                    if let Some(line) = self.chat.on_message(msg) {
                        self.output.print(&line)?;
                    }
                }
                Event::Disconnected(e) => return Ok(self.disconnected(e, inbox)?),
            }
        }
    }

    fn perform(&mut self, actions: Vec<Action>) -> Result<(), Stop> {
        for action in actions {
            match action {
                Action::Send(request) => {
                    self.sender.send(request).map_err(Stop::SendFailed)?;
                    self.last_sent = Instant::now();
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
        let _ = self.sender.close();
        code
    }

    /// Reports a lost connection. When the line editor is reading, the terminal is
    /// its own until it returns: the user is asked to press Enter.
    fn disconnected(
        &mut self,
        e: ClientError,
        inbox: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<ExitCode> {
        let why = match e {
            ClientError::Closed => "connection closed by the server".to_string(),
            other => other.to_string(),
        };
        self.output
            .print(&clean(&format!("! disconnected: {why}")))?;
        if matches!(self.output, Output::Editor { .. }) && !self.input_idle {
            self.output.print("(press Enter to exit)")?;
            while let Ok(event) = inbox.recv() {
                if matches!(event, Event::Line(_) | Event::InputClosed(_)) {
                    break;
                }
            }
        }
        Ok(ExitCode::FAILURE)
    }
    /// Waits until every line is printed.
    pub(crate) fn finish(self) {
        self.output.finish();
    }
}
