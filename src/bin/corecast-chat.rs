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
//! [`Chat`], a pure state machine that the unit tests below drive without a socket.
//!
//! Input is read one line at a time, when the main loop asks for it: not while a join
//! or leave is waiting for its answer. So the first line waits for the first join, and
//! a line after `/join games` goes to games, typed or piped. At the end of input (or
//! `/quit`) the client waits, up to `--quit-wait` seconds, for the server to echo
//! every message it sent, so piped input is delivered before the connection closes.

use std::collections::BTreeSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use prost::Message;

use corecast::client::{Client, ClientError, ClientReceiver, ClientSender, TlsTrust};
use corecast::proto::{
    client_message, server_message::Data, ClientMessage, ErrorCode, JoinRequest, LeaveRequest,
    Ping, SendMessage, ServerMessage,
};

/// The commands, as `/help` and `--help` list them.
const COMMANDS: &str = "\
Commands (anything else is said to the current room):
  /to NAME[,NAME...] TEXT   send TEXT to these members of the current room only,
                            marked private (a corecast-chat convention)
  /join ROOM                join ROOM (or switch to it if already joined); it becomes current
  /leave [ROOM]             leave ROOM (default: the current room)
  /who [ROOM]               list the members of ROOM (default: the current room)
  /help                     this list
  /quit                     disconnect and exit (end of input, Ctrl-D and Ctrl-C do the same)
  //TEXT                    say /TEXT (a line that starts with a slash)";

/// How long a lost connection's last messages are waited for, after a send failed.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(5);

/// corecast-chat: a terminal chat client for a corecast server.
///
/// Connects, logs in as NAME, joins ROOM, then sends each line typed to the current
/// room and prints what arrives, one line each.
#[derive(Debug, Parser)]
#[command(name = "corecast-chat", version, about, long_about, after_help = COMMANDS)]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: String,

    /// Bearer token, when the server requires one (its --auth-token).
    #[arg(long, env = "CORECAST_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Speak TLS, trusting the system's root certificates (SSL_CERT_FILE or
    /// SSL_CERT_DIR replace them when set, as with OpenSSL).
    #[arg(long)]
    tls: bool,

    /// Speak TLS, trusting only the CA certificates in this PEM file (one or several).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// The name the server's certificate must carry (a DNS name or IP address in its
    /// subjectAltName). Default: the host part of --addr. Implies --tls.
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,

    /// The server's --max-frame-bytes: a line that would make a larger frame is
    /// refused here with a message (the server would close the connection).
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    max_frame_bytes: usize,

    /// Seconds without sending anything after which a keepalive ping goes out (0:
    /// never). Keep it under the server's --idle-timeout (default 60 s).
    #[arg(long, default_value_t = 20)]
    keepalive: u64,

    /// At the end of input or /quit, seconds to wait for the server to echo what was
    /// sent; messages still unconfirmed then are reported, and the exit status is 1.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    quit_wait: u64,

    /// Player name to log in with.
    name: String,

    /// Room to join first.
    #[arg(default_value = "lobby")]
    room: String,
}

/// What one input line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// A blank line: nothing to do.
    Nothing,
    /// Say this to every member of the current room.
    Say(String),
    /// Say this to the listed members of the current room only.
    To { targets: Vec<String>, text: String },
    /// Join a room, or switch to it when already a member.
    Join(String),
    /// Leave a room (None: the current one).
    Leave(Option<String>),
    /// List a room's members (None: the current room).
    Who(Option<String>),
    /// Print the command list.
    Help,
    /// Disconnect and exit.
    Quit,
}

/// Parses one input line (without its line ending); `Err` carries a usage message.
fn parse_line(line: &str) -> Result<Command, String> {
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{escaped}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    let (word, rest) = match command.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (command, ""),
    };
    let optional = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    match word {
        "to" => {
            let usage = || "usage: /to NAME[,NAME...] TEXT".to_string();
            let (names, text) = rest.split_once(char::is_whitespace).ok_or_else(usage)?;
            let mut targets: Vec<String> = Vec::new();
            for name in names.split(',').filter(|n| !n.is_empty()) {
                if !targets.iter().any(|t| t == name) {
                    targets.push(name.to_string());
                }
            }
            let text = text.trim_start();
            if targets.is_empty() || text.is_empty() {
                return Err(usage());
            }
            Ok(Command::To {
                targets,
                text: text.to_string(),
            })
        }
        "join" => optional(rest)
            .map(Command::Join)
            .ok_or_else(|| "usage: /join ROOM".to_string()),
        "leave" => Ok(Command::Leave(optional(rest))),
        "who" => Ok(Command::Who(optional(rest))),
        "help" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        other => Err(format!("unknown command /{other} (try /help)")),
    }
}

/// How corecast-chat marks a private message: the body starts with this, then the
/// recipients (comma-separated) and a space, then the text: `/to ann,cat psst`.
///
/// The protocol has no flag for a targeted message, so the recipient cannot learn from
/// the server that it was targeted; this is an application-level convention in the
/// body (bodies are the application's bytes). A public line that would read as private
/// or as an escape (it starts with `/to ` or `//`) goes out with one more slash, which
/// the receiving corecast-chat removes. Other clients show the body as it is, and a
/// message from another client that happens to start with the marker looks private.
const PRIVATE_MARKER: &str = "/to ";

/// A message body as corecast-chat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// Said to the whole room.
    Public(String),
    /// Marked private by its sender, to these recipients.
    Private { targets: Vec<String>, text: String },
}

/// The body of a public line.
fn encode_public(text: &str) -> String {
    if text.starts_with(PRIVATE_MARKER) || text.starts_with("//") {
        format!("/{text}")
    } else {
        text.to_string()
    }
}

/// The body of a private message.
fn encode_private(targets: &[String], text: &str) -> String {
    format!("{PRIVATE_MARKER}{} {text}", targets.join(","))
}

/// Reads a body written by [`encode_public`] or [`encode_private`] (or by anything
/// else: invalid UTF-8 is replaced, not refused).
fn decode_body(body: &[u8]) -> Body {
    let body = String::from_utf8_lossy(body);
    if let Some(escaped) = body.strip_prefix("//") {
        return Body::Public(format!("/{escaped}"));
    }
    if let Some((names, text)) = body
        .strip_prefix(PRIVATE_MARKER)
        .and_then(|rest| rest.split_once(' '))
    {
        let targets: Vec<String> = names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if !targets.is_empty() {
            return Body::Private {
                targets,
                text: text.to_string(),
            };
        }
    }
    Body::Public(body.into_owned())
}

/// What the main loop does for the chat state machine.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Send this request to the server.
    Send(client_message::Data),
    /// Print this line.
    Print(String),
    /// Disconnect and exit (once what was sent is confirmed).
    Quit,
}

/// A joined room and the members the client knows of.
#[derive(Debug)]
struct Room {
    id: String,
    members: BTreeSet<String>,
}

/// A request that changes the current room, sent and not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    Join(String),
    Leave(String),
}

/// The chat client's state: joined rooms, in join order, the current room, and what
/// is still on its way.
#[derive(Debug)]
struct Chat {
    /// Our own player id (the sender of our echoes).
    me: String,
    /// The server's frame limit: larger requests are refused here.
    max_frame_bytes: usize,
    rooms: Vec<Room>,
    current: Option<String>,
    /// A join or leave waiting for its answer: input waits with it.
    awaiting: Option<Awaiting>,
    /// Our messages sent and not echoed back yet (a private one is addressed to its
    /// sender too, so that it is echoed).
    unconfirmed: usize,
}

impl Chat {
    fn new(me: &str, max_frame_bytes: usize) -> Self {
        Self {
            me: me.to_string(),
            max_frame_bytes,
            rooms: Vec::new(),
            current: None,
            awaiting: None,
            unconfirmed: 0,
        }
    }

    /// Whether the next input line can be taken (no join or leave is on its way).
    fn ready(&self) -> bool {
        self.awaiting.is_none()
    }

    /// Whether everything sent has been answered or echoed.
    fn settled(&self) -> bool {
        self.awaiting.is_none() && self.unconfirmed == 0
    }

    /// The line editor's prompt.
    fn prompt(&self) -> String {
        match &self.current {
            Some(room) => clean(&format!("{room}> ")),
            None => "> ".to_string(),
        }
    }

    /// What an input line leads to.
    fn on_line(&mut self, line: &str) -> Vec<Action> {
        let command = match parse_line(line) {
            Ok(command) => command,
            Err(usage) => return vec![Action::Print(format!("! {usage}"))],
        };
        match command {
            Command::Nothing => vec![],
            Command::Say(text) => match self.current.clone() {
                Some(room) => {
                    let request = send_message(&room, vec![], encode_public(&text));
                    self.message(request, "line")
                }
                None => vec![not_in_a_room()],
            },
            Command::To { targets, text } => self.to(targets, &text),
            Command::Join(room) => {
                if self.room(&room).is_some() {
                    let line = format!("* current room: {room}");
                    self.current = Some(room);
                    vec![Action::Print(clean(&line))]
                } else {
                    let request = client_message::Data::JoinRequest(JoinRequest {
                        room_id: room.clone(),
                        room_config: None,
                    });
                    self.request(request, "room name", Awaiting::Join(room))
                }
            }
            Command::Leave(room) => match room.or_else(|| self.current.clone()) {
                // Asked even for a room not joined here: the server's answer is the truth.
                Some(room_id) => {
                    let request = client_message::Data::LeaveRequest(LeaveRequest {
                        room_id: room_id.clone(),
                    });
                    self.request(request, "room name", Awaiting::Leave(room_id))
                }
                None => vec![not_in_a_room()],
            },
            Command::Who(room) => match room.or_else(|| self.current.clone()) {
                Some(room_id) => match self.room(&room_id) {
                    Some(room) => vec![Action::Print(clean(&format!(
                        "* members of {room_id}: {}",
                        list(&room.members)
                    )))],
                    None => vec![Action::Print(clean(&format!("! not in {room_id}")))],
                },
                None => vec![not_in_a_room()],
            },
            Command::Help => COMMANDS
                .lines()
                .map(|l| Action::Print(l.to_string()))
                .collect(),
            Command::Quit => vec![Action::Quit],
        }
    }

    /// `/to`: the targets are checked against the members this client knows of (the
    /// server silently ignores unknown ids, so the sender would get no sign). Unknown
    /// names are warned about and left out; with no known name left nothing is sent.
    fn to(&mut self, targets: Vec<String>, text: &str) -> Vec<Action> {
        let Some(room_id) = self.current.clone() else {
            return vec![not_in_a_room()];
        };
        let members = self.room(&room_id).map(|r| &r.members);
        let (known, unknown): (Vec<String>, Vec<String>) = targets
            .into_iter()
            .partition(|t| members.is_some_and(|m| m.contains(t)));
        if known.is_empty() {
            return vec![Action::Print(clean(&format!(
                "! not in {room_id}: {}; nothing sent",
                unknown.join(", ")
            )))];
        }
        let mut actions = Vec::new();
        if !unknown.is_empty() {
            actions.push(Action::Print(clean(&format!(
                "! not in {room_id}: {}; sent to {} only",
                unknown.join(", "),
                known.join(", ")
            ))));
        }
        let body = encode_private(&known, text);
        let mut target_ids = known;
        if !target_ids.contains(&self.me) {
            // Addressed to the sender too: its echo confirms the server took it.
            target_ids.push(self.me.clone());
        }
        actions.extend(self.message(send_message(&room_id, target_ids, body), "line"));
        actions
    }

    /// A message the server will echo back to us.
    fn message(&mut self, request: client_message::Data, what: &str) -> Vec<Action> {
        match self.fits(request, what) {
            Ok(send) => {
                self.unconfirmed += 1;
                vec![send]
            }
            Err(refused) => vec![refused],
        }
    }

    /// A join or leave: input waits for its answer.
    fn request(
        &mut self,
        request: client_message::Data,
        what: &str,
        awaiting: Awaiting,
    ) -> Vec<Action> {
        match self.fits(request, what) {
            Ok(send) => {
                self.awaiting = Some(awaiting);
                vec![send]
            }
            Err(refused) => vec![refused],
        }
    }

    /// `Send`, or a refusal when the frame would be over the server's limit (the
    /// server would close the connection for it).
    fn fits(&self, request: client_message::Data, what: &str) -> Result<Action, Action> {
        let len = ClientMessage {
            data: Some(request),
        };
        let size = len.encoded_len();
        match len.data {
            Some(request) if size <= self.max_frame_bytes => Ok(Action::Send(request)),
            _ => Err(Action::Print(format!(
                "! {what} too long: it makes a {size}-byte frame, the server takes at most \
                 {} (--max-frame-bytes); not sent",
                self.max_frame_bytes
            ))),
        }
    }

    /// Updates the state for a server message; returns the line to print, if any.
    fn on_message(&mut self, msg: ServerMessage) -> Option<String> {
        let line = match msg.data? {
            Data::LoginResponse(r) => return failure(r.error.as_ref()),
            Data::JoinResponse(r) => {
                if self.awaiting == Some(Awaiting::Join(r.room_id.clone())) {
                    self.awaiting = None;
                }
                if let Some(line) = failure(r.error.as_ref()) {
                    return Some(line);
                }
                let members: BTreeSet<String> = r.current_players.into_iter().collect();
                let line = format!("* joined {} (members: {})", r.room_id, list(&members));
                self.rooms.retain(|room| room.id != r.room_id);
                self.rooms.push(Room {
                    id: r.room_id.clone(),
                    members,
                });
                self.current = Some(r.room_id);
                line
            }
            Data::JoinNotification(n) => {
                if let Some(room) = self.room_mut(&n.room_id) {
                    room.members.insert(n.player_id.clone());
                }
                format!("* {} joined {}", n.player_id, n.room_id)
            }
            Data::LeaveResponse(r) => {
                if self.awaiting == Some(Awaiting::Leave(r.room_id.clone())) {
                    self.awaiting = None;
                }
                if let Some(line) = failure(r.error.as_ref()) {
                    return Some(line);
                }
                self.rooms.retain(|room| room.id != r.room_id);
                if self.current.as_deref() != Some(r.room_id.as_str()) {
                    format!("* left {}", r.room_id)
                } else {
                    self.current = self.rooms.last().map(|room| room.id.clone());
                    match &self.current {
                        Some(now) => format!("* left {} (now in {now})", r.room_id),
                        None => format!("* left {} (no current room: /join ROOM)", r.room_id),
                    }
                }
            }
            Data::LeaveNotification(n) => {
                if let Some(room) = self.room_mut(&n.room_id) {
                    room.members.remove(&n.player_id);
                }
                format!("* {} left {}", n.player_id, n.room_id)
            }
            Data::MessageNotification(m) => {
                let mine = m.sender_id == self.me;
                if mine {
                    self.unconfirmed = self.unconfirmed.saturating_sub(1);
                }
                match decode_body(&m.body) {
                    Body::Public(text) => format!("[{}] {}: {text}", m.room_id, m.sender_id),
                    Body::Private { targets, text } => {
                        let you = |name: &str| {
                            if name == self.me {
                                "you".to_string()
                            } else {
                                name.to_string()
                            }
                        };
                        let to: Vec<String> = targets.iter().map(|t| you(t)).collect();
                        format!(
                            "[{}] {} -> {}: {text}",
                            m.room_id,
                            you(&m.sender_id),
                            to.join(", ")
                        )
                    }
                }
            }
            Data::Pong(_) => return None,
            Data::Error(e) => {
                // Every join and leave gets its own response; this only makes sure an
                // unexpected answer can never leave the input waiting.
                self.awaiting = None;
                return Some(error_line(&e));
            }
        };
        Some(clean(&line))
    }

    fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|room| room.id == id)
    }

    fn room_mut(&mut self, id: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == id)
    }
}

fn send_message(room: &str, targets: Vec<String>, body: String) -> client_message::Data {
    client_message::Data::SendMessage(SendMessage {
        target_ids: targets,
        room_id: room.to_string(),
        body: body.into_bytes().into(),
    })
}

fn not_in_a_room() -> Action {
    Action::Print("! not in a room: /join ROOM first".to_string())
}

fn list(members: &BTreeSet<String>) -> String {
    members
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error line for a response's `error` field, None when it says NONE.
fn failure(error: Option<&corecast::proto::Error>) -> Option<String> {
    error
        .filter(|e| e.code != ErrorCode::None as i32)
        .map(error_line)
}

/// `! error CODE: message`, with the code's protocol name.
fn error_line(error: &corecast::proto::Error) -> String {
    let code = match ErrorCode::try_from(error.code) {
        Ok(code) => code.as_str_name().to_string(),
        Err(_) => format!("CODE_{}", error.code),
    };
    clean(&format!("! error {code}: {}", error.message))
}

/// Escapes control characters: names, room ids and bodies come from other users, and
/// must not move the cursor, clear the screen or forge a second line.
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What the reader threads hand to the main loop.
enum Event {
    /// One input line, without its line ending.
    Line(String),
    /// Input ended: end of file, Ctrl-D or Ctrl-C at the prompt, or an input error
    /// (its text).
    InputClosed(Option<String>),
    /// One message from the server.
    Server(ServerMessage),
    /// The connection ended.
    Disconnected(ClientError),
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
        .login(&args.name, args.token.as_deref())
        .map_err(explain)
        .with_context(|| format!("logging in as {}", args.name))?;
    let (sender, receiver) = client.split().context("splitting the connection")?;

    let (events, inbox) = mpsc::channel();
    spawn_server_reader(receiver, events.clone())?;
    let (ready, asked) = mpsc::channel();
    let editor = io::stdin().is_terminal() && io::stdout().is_terminal();
    let output = if editor {
        spawn_editor(events, asked)?
    } else {
        spawn_plain_input(events, asked)?;
        Output::Plain(io::stdout())
    };
    let mut session = Session {
        chat: Chat::new(&args.name, args.max_frame_bytes),
        sender,
        output,
        ready,
        input_idle: true,
        quitting: None,
        quit_wait: Duration::from_secs(args.quit_wait),
        last_sent: Instant::now(),
        keepalive: (args.keepalive > 0).then(|| Duration::from_secs(args.keepalive)),
    };
    let code = session.run(&args.room, &inbox);
    session.output.finish();
    code
}

/// Connects over plain TCP, or over TLS when any `--tls*` flag is given.
fn connect(args: &Args) -> anyhow::Result<Client> {
    if !args.tls && args.tls_ca.is_none() && args.tls_name.is_none() {
        return Client::connect(&args.addr)
            .map_err(explain)
            .with_context(|| format!("connecting to {}", args.addr));
    }
    let trust = match &args.tls_ca {
        Some(path) => TlsTrust::ca_file(path),
        None => TlsTrust::system(),
    }
    .map_err(explain)?;
    let name = match &args.tls_name {
        Some(name) => name.clone(),
        None => host_of(&args.addr)
            .with_context(|| format!("no host in --addr {}: give --tls-name", args.addr))?
            .to_string(),
    };
    Client::connect_tls_with(&args.addr, &name, &trust)
        .map_err(explain)
        .with_context(|| format!("connecting to {} over TLS", args.addr))
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> Option<&str> {
    let (host, _port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// A client error, with the corecast-chat flag that usually fixes it.
fn explain(e: ClientError) -> anyhow::Error {
    use rustls::CertificateError;
    let hint = match &e {
        ClientError::TlsExpected { .. } => "--tls, or --tls-ca FILE for a CA of your own",
        ClientError::Handshake {
            error: rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            ..
        }
        | ClientError::SystemRoots(_) => "--tls-ca FILE trusts a CA of your own",
        _ => return anyhow::Error::new(e),
    };
    anyhow!("{e}; corecast-chat: {hint}")
}

/// Where lines are printed: stdout, or the line editor, above the line being typed.
enum Output {
    Plain(io::Stdout),
    Editor {
        lines: mpsc::Sender<String>,
        printer: thread::JoinHandle<()>,
    },
}

impl Output {
    fn print(&mut self, line: &str) -> anyhow::Result<()> {
        match self {
            Output::Plain(out) => {
                let mut out = out.lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .context("writing to stdout")
            }
            Output::Editor { lines, .. } => lines
                .send(format!("{line}\n"))
                .map_err(|_| anyhow!("the terminal printer stopped")),
        }
    }

    /// Waits until every line is printed.
    fn finish(self) {
        if let Output::Editor { lines, printer } = self {
            drop(lines);
            let _ = printer.join();
        }
    }
}

/// The main loop's state.
struct Session {
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
    fn run(&mut self, room: &str, inbox: &mpsc::Receiver<Event>) -> anyhow::Result<ExitCode> {
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
}

fn spawn_server_reader(
    mut receiver: ClientReceiver,
    events: mpsc::Sender<Event>,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("server-reader".into())
        .spawn(move || loop {
            match receiver.recv() {
                Ok(msg) => {
                    if events.send(Event::Server(msg)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::Disconnected(e));
                    return;
                }
            }
        })
        .context("starting the server reader")?;
    Ok(())
}

/// Reads one plain line from stdin each time it is asked.
fn spawn_plain_input(
    events: mpsc::Sender<Event>,
    asked: mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("input-reader".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = Vec::new();
            while asked.recv().is_ok() {
                buf.clear();
                let event = match input.read_until(b'\n', &mut buf) {
                    Ok(0) => Event::InputClosed(None),
                    Err(e) => Event::InputClosed(Some(e.to_string())),
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        Event::Line(line.trim_end_matches(['\n', '\r']).to_string())
                    }
                };
                let last = matches!(event, Event::InputClosed(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .context("starting the input reader")?;
    Ok(())
}

/// Starts the line editor (one line each time it is asked, with the prompt it is
/// given; in-memory history) and the thread that prints through it.
fn spawn_editor(
    events: mpsc::Sender<Event>,
    asked: mpsc::Receiver<String>,
) -> anyhow::Result<Output> {
    use rustyline::error::ReadlineError;
    use rustyline::ExternalPrinter;

    let config = rustyline::Config::builder()
        .auto_add_history(true)
        .history_ignore_dups(true)
        .context("configuring the line editor")?
        // A pasted block is sent line by line, as if typed.
        .bracketed_paste(false)
        .build();
    let mut editor =
        rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
    let mut printer = editor
        .create_external_printer()
        .context("starting the line editor's printer")?;
    thread::Builder::new()
        .name("input-editor".into())
        .spawn(move || {
            while let Ok(prompt) = asked.recv() {
                let event = loop {
                    match editor.readline(&prompt) {
                        Ok(line) => break Event::Line(line),
                        Err(ReadlineError::Eof | ReadlineError::Interrupted) => {
                            break Event::InputClosed(None)
                        }
                        // A window resize: read on.
                        Err(ReadlineError::Signal(_)) => continue,
                        Err(e) => break Event::InputClosed(Some(e.to_string())),
                    }
                };
                let last = matches!(event, Event::InputClosed(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .context("starting the input reader")?;
    let (lines, printed) = mpsc::channel::<String>();
    let printer = thread::Builder::new()
        .name("printer".into())
        .spawn(move || {
            for line in printed {
                if printer.print(line.clone()).is_err() {
                    // The editor is gone: the terminal is ours again.
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                }
            }
        })
        .context("starting the printer")?;
    Ok(Output::Editor { lines, printer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast::proto::{
        Error, JoinNotification, JoinResponse, LeaveNotification, LeaveResponse,
        MessageNotification, Pong,
    };

    const LIMIT: usize = 65536;

    fn data(d: Data) -> ServerMessage {
        ServerMessage { data: Some(d) }
    }

    fn ok() -> Option<Error> {
        Some(Error {
            code: ErrorCode::None as i32,
            message: String::new(),
        })
    }

    fn joined(chat: &mut Chat, room: &str, members: &[&str]) -> Option<String> {
        chat.on_message(data(Data::JoinResponse(JoinResponse {
            room_id: room.into(),
            current_players: members.iter().map(|m| m.to_string()).collect(),
            room_config: None,
            error: ok(),
        })))
    }

    fn left(chat: &mut Chat, room: &str) -> Option<String> {
        chat.on_message(data(Data::LeaveResponse(LeaveResponse {
            room_id: room.into(),
            error: ok(),
        })))
    }

    fn message(chat: &mut Chat, sender: &str, room: &str, body: &str) -> Option<String> {
        chat.on_message(data(Data::MessageNotification(MessageNotification {
            sender_id: sender.into(),
            room_id: room.into(),
            body: body.to_string().into_bytes().into(),
            seq: 1,
        })))
    }

    fn printed(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Print(line) => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    fn sent(actions: &[Action]) -> Vec<&client_message::Data> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(request) => Some(request),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plain_lines_are_said() {
        assert_eq!(
            parse_line("hello there"),
            Ok(Command::Say("hello there".into()))
        );
        assert_eq!(
            parse_line("  spaced  "),
            Ok(Command::Say("  spaced  ".into()))
        );
        assert_eq!(parse_line(""), Ok(Command::Nothing));
        assert_eq!(parse_line("   "), Ok(Command::Nothing));
        assert_eq!(
            parse_line("//etc/hosts"),
            Ok(Command::Say("/etc/hosts".into()))
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_line("/to ben psst, over here"),
            Ok(Command::To {
                targets: vec!["ben".into()],
                text: "psst, over here".into()
            })
        );
        assert_eq!(
            parse_line("/to ben,cat,ben hi"),
            Ok(Command::To {
                targets: vec!["ben".into(), "cat".into()],
                text: "hi".into()
            })
        );
        assert_eq!(parse_line("/join games"), Ok(Command::Join("games".into())));
        assert_eq!(
            parse_line("/join  games "),
            Ok(Command::Join("games".into()))
        );
        assert_eq!(parse_line("/leave"), Ok(Command::Leave(None)));
        assert_eq!(
            parse_line("/leave games"),
            Ok(Command::Leave(Some("games".into())))
        );
        assert_eq!(parse_line("/who"), Ok(Command::Who(None)));
        assert_eq!(
            parse_line("/who games"),
            Ok(Command::Who(Some("games".into())))
        );
        assert_eq!(parse_line("/help"), Ok(Command::Help));
        assert_eq!(parse_line("/quit"), Ok(Command::Quit));
    }

    #[test]
    fn bad_commands_get_usage() {
        assert!(parse_line("/to").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to ben").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to , hi")
            .unwrap_err()
            .starts_with("usage: /to"));
        assert_eq!(parse_line("/join"), Err("usage: /join ROOM".into()));
        assert_eq!(
            parse_line("/dance now"),
            Err("unknown command /dance (try /help)".into())
        );
    }

    #[test]
    fn bodies_round_trip_and_private_is_marked() {
        for text in [
            "hello",
            "/etc/hosts",
            "/to ann hi",
            "//to ann hi",
            "//",
            "/",
            "///x",
            "/tom is here",
            "",
        ] {
            let body = encode_public(text);
            assert_eq!(
                decode_body(body.as_bytes()),
                Body::Public(text.into()),
                "{text:?} as {body:?}"
            );
        }
        // Only a line that would collide is escaped: other clients see the rest as is.
        assert_eq!(encode_public("/etc/hosts"), "/etc/hosts");
        assert_eq!(encode_public("/to ann hi"), "//to ann hi");
        let targets = vec!["ann".to_string(), "cat".to_string()];
        let body = encode_private(&targets, "psst, a secret");
        assert_eq!(body, "/to ann,cat psst, a secret");
        assert_eq!(
            decode_body(body.as_bytes()),
            Body::Private {
                targets,
                text: "psst, a secret".into()
            }
        );
        // Not a well-formed marker: public.
        assert_eq!(decode_body(b"/to ann"), Body::Public("/to ann".into()));
        assert_eq!(decode_body(b"/to , x"), Body::Public("/to , x".into()));
    }

    #[test]
    fn lines_go_to_the_current_room() {
        let mut chat = Chat::new("ann", LIMIT);
        assert_eq!(
            printed(&chat.on_line("hi")),
            ["! not in a room: /join ROOM first"]
        );
        assert_eq!(
            joined(&mut chat, "lobby", &["ben", "ann"]).as_deref(),
            Some("* joined lobby (members: ann, ben)")
        );
        assert_eq!(
            chat.on_line("hi"),
            [Action::Send(send_message("lobby", vec![], "hi".into()))]
        );
        // A public line that would read as private goes out escaped.
        assert_eq!(
            chat.on_line("//to ben hi"),
            [Action::Send(send_message(
                "lobby",
                vec![],
                "//to ben hi".into()
            ))]
        );
        // Private: marked, and addressed to the sender too (its echo confirms it).
        assert_eq!(
            chat.on_line("/to ben psst"),
            [Action::Send(send_message(
                "lobby",
                vec!["ben".into(), "ann".into()],
                "/to ben psst".into()
            ))]
        );
        assert_eq!(chat.unconfirmed, 3);
    }

    #[test]
    fn private_messages_show_as_private() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann", "ben", "cat"]);
        assert_eq!(
            message(&mut chat, "ben", "lobby", "/to ann psst").as_deref(),
            Some("[lobby] ben -> you: psst")
        );
        assert_eq!(
            message(&mut chat, "ben", "lobby", "/to ann,cat hi both").as_deref(),
            Some("[lobby] ben -> you, cat: hi both")
        );
        // Our own private message, echoed.
        chat.on_line("/to ben psst");
        assert_eq!(chat.unconfirmed, 1);
        assert_eq!(
            message(&mut chat, "ann", "lobby", "/to ben psst").as_deref(),
            Some("[lobby] you -> ben: psst")
        );
        assert!(chat.settled());
        // Public lines, escaped or not.
        assert_eq!(
            message(&mut chat, "ben", "lobby", "//to ann hi").as_deref(),
            Some("[lobby] ben: /to ann hi")
        );
        assert_eq!(
            message(&mut chat, "ben", "lobby", "hello").as_deref(),
            Some("[lobby] ben: hello")
        );
    }

    #[test]
    fn to_unknown_members_is_warned() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann", "ben"]);
        let nobody = chat.on_line("/to nobody hi");
        assert_eq!(printed(&nobody), ["! not in lobby: nobody; nothing sent"]);
        assert!(sent(&nobody).is_empty());
        assert_eq!(chat.unconfirmed, 0);

        let some = chat.on_line("/to ben,nobody hi");
        assert_eq!(printed(&some), ["! not in lobby: nobody; sent to ben only"]);
        assert_eq!(
            sent(&some),
            [&send_message(
                "lobby",
                vec!["ben".into(), "ann".into()],
                "/to ben hi".into()
            )]
        );
        // A member who left is unknown again.
        chat.on_message(data(Data::LeaveNotification(LeaveNotification {
            room_id: "lobby".into(),
            player_id: "ben".into(),
        })));
        assert_eq!(
            printed(&chat.on_line("/to ben hi")),
            ["! not in lobby: ben; nothing sent"]
        );
    }

    #[test]
    fn too_long_lines_are_refused_here() {
        let mut chat = Chat::new("ann", 100);
        joined(&mut chat, "lobby", &["ann"]);
        // ClientMessage{SendMessage{room_id "lobby", body}} is 2 + 7 + 2 + len bytes
        // for short bodies (one-byte lengths): an 89-byte line makes a 100-byte frame.
        let fits = "x".repeat(89);
        assert_eq!(sent(&chat.on_line(&fits)).len(), 1);
        let over = chat.on_line(&"x".repeat(90));
        assert!(sent(&over).is_empty());
        assert_eq!(
            printed(&over),
            [
                "! line too long: it makes a 101-byte frame, the server takes at most 100 \
              (--max-frame-bytes); not sent"
            ]
        );
        assert_eq!(chat.unconfirmed, 1, "the refused line is not awaited");
        let join = chat.on_line(&format!("/join {}", "r".repeat(100)));
        assert!(sent(&join).is_empty());
        assert!(chat.ready(), "a refused join is not awaited");
    }

    #[test]
    fn input_waits_for_joins_and_leaves() {
        let mut chat = Chat::new("ann", LIMIT);
        chat.on_line("/join lobby");
        assert!(!chat.ready());
        assert_eq!(chat.prompt(), "> ");
        // Another room's answer is not this one.
        joined(&mut chat, "other", &["ann"]);
        assert!(!chat.ready());
        joined(&mut chat, "lobby", &["ann"]);
        assert!(chat.ready());
        assert_eq!(chat.prompt(), "lobby> ");
        chat.on_line("/leave");
        assert!(!chat.ready());
        left(&mut chat, "lobby");
        assert!(chat.ready());
        // A refused join is an answer too.
        chat.on_line("/join full");
        chat.on_message(data(Data::JoinResponse(JoinResponse {
            room_id: "full".into(),
            current_players: vec![],
            room_config: None,
            error: Some(Error {
                code: ErrorCode::RoomIsFull as i32,
                message: "full".into(),
            }),
        })));
        assert!(chat.ready());
    }

    #[test]
    fn quitting_waits_for_echoes() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann", "ben"]);
        chat.on_line("one");
        chat.on_line("two");
        assert!(!chat.settled());
        message(&mut chat, "ben", "lobby", "not mine");
        message(&mut chat, "ann", "lobby", "one");
        assert!(!chat.settled());
        message(&mut chat, "ann", "lobby", "two");
        assert!(chat.settled());
    }

    #[test]
    fn join_switches_and_leave_falls_back() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann"]);
        assert_eq!(
            chat.on_line("/join games"),
            [Action::Send(client_message::Data::JoinRequest(
                JoinRequest {
                    room_id: "games".into(),
                    room_config: None
                }
            ))]
        );
        // Not current until the server says yes.
        assert_eq!(chat.current.as_deref(), Some("lobby"));
        joined(&mut chat, "games", &["ann"]);
        assert_eq!(chat.current.as_deref(), Some("games"));
        // Joining a room already joined only switches, without asking the server.
        assert_eq!(
            printed(&chat.on_line("/join lobby")),
            ["* current room: lobby"]
        );
        assert_eq!(
            printed(&chat.on_line("/join games")),
            ["* current room: games"]
        );

        assert_eq!(
            chat.on_line("/leave"),
            [Action::Send(client_message::Data::LeaveRequest(
                LeaveRequest {
                    room_id: "games".into()
                }
            ))]
        );
        assert_eq!(
            left(&mut chat, "games").as_deref(),
            Some("* left games (now in lobby)")
        );
        assert_eq!(
            left(&mut chat, "lobby").as_deref(),
            Some("* left lobby (no current room: /join ROOM)")
        );
        assert_eq!(chat.current, None);
        assert_eq!(
            printed(&chat.on_line("/leave")),
            ["! not in a room: /join ROOM first"]
        );
    }

    #[test]
    fn leaving_another_room_keeps_the_current_one() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann"]);
        joined(&mut chat, "games", &["ann"]);
        assert_eq!(left(&mut chat, "lobby").as_deref(), Some("* left lobby"));
        assert_eq!(chat.current.as_deref(), Some("games"));
    }

    #[test]
    fn who_tracks_joins_and_leaves() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann"]);
        let join = chat.on_message(data(Data::JoinNotification(JoinNotification {
            room_id: "lobby".into(),
            player_id: "ben".into(),
        })));
        assert_eq!(join.as_deref(), Some("* ben joined lobby"));
        chat.on_message(data(Data::JoinNotification(JoinNotification {
            room_id: "lobby".into(),
            player_id: "cat".into(),
        })));
        assert_eq!(
            printed(&chat.on_line("/who")),
            ["* members of lobby: ann, ben, cat"]
        );
        let leave = chat.on_message(data(Data::LeaveNotification(LeaveNotification {
            room_id: "lobby".into(),
            player_id: "ben".into(),
        })));
        assert_eq!(leave.as_deref(), Some("* ben left lobby"));
        assert_eq!(
            printed(&chat.on_line("/who")),
            ["* members of lobby: ann, cat"]
        );
        assert_eq!(printed(&chat.on_line("/who games")), ["! not in games"]);
    }

    #[test]
    fn notifications_format() {
        let mut chat = Chat::new("ann", LIMIT);
        assert_eq!(
            message(&mut chat, "ben", "lobby", "hello").as_deref(),
            Some("[lobby] ben: hello")
        );
        let err = chat.on_message(data(Data::Error(Error {
            code: ErrorCode::NotInRoom as i32,
            message: "not a member of games".into(),
        })));
        assert_eq!(
            err.as_deref(),
            Some("! error NOT_IN_ROOM: not a member of games")
        );
        let unknown = error_line(&Error {
            code: 99,
            message: "new".into(),
        });
        assert_eq!(unknown, "! error CODE_99: new");
        assert_eq!(chat.on_message(data(Data::Pong(Pong { nonce: 1 }))), None);
        assert_eq!(chat.on_message(ServerMessage { data: None }), None);
    }

    #[test]
    fn failed_responses_change_nothing() {
        let mut chat = Chat::new("ann", LIMIT);
        joined(&mut chat, "lobby", &["ann"]);
        let full = chat.on_message(data(Data::JoinResponse(JoinResponse {
            room_id: "games".into(),
            current_players: vec![],
            room_config: None,
            error: Some(Error {
                code: ErrorCode::RoomIsFull as i32,
                message: "room games is full".into(),
            }),
        })));
        assert_eq!(
            full.as_deref(),
            Some("! error ROOM_IS_FULL: room games is full")
        );
        assert_eq!(chat.current.as_deref(), Some("lobby"));
        let not_in = chat.on_message(data(Data::LeaveResponse(LeaveResponse {
            room_id: "games".into(),
            error: Some(Error {
                code: ErrorCode::NotInRoom as i32,
                message: "not in games".into(),
            }),
        })));
        assert_eq!(not_in.as_deref(), Some("! error NOT_IN_ROOM: not in games"));
        assert_eq!(chat.current.as_deref(), Some("lobby"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut chat = Chat::new("ann", LIMIT);
        let msg = chat.on_message(data(Data::MessageNotification(MessageNotification {
            sender_id: "e\u{1b}[2Jve".into(),
            room_id: "lobby".into(),
            body: "two\nlines\u{7}".into(),
            seq: 1,
        })));
        assert_eq!(
            msg.as_deref(),
            Some("[lobby] e\\u{1b}[2Jve: two\\nlines\\u{7}")
        );
    }

    #[test]
    fn the_tls_name_defaults_to_the_host() {
        assert_eq!(host_of("localhost:7878"), Some("localhost"));
        assert_eq!(host_of("127.0.0.1:7878"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:7878"), Some("::1"));
        assert_eq!(host_of(":7878"), None);
        assert_eq!(host_of("nohost"), None);
    }
}
