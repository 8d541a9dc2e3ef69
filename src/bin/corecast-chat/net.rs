//! The network side: connecting (plain TCP, or TLS when a `--tls*` flag is given), the
//! hints added to client errors, the thread that reads the server's messages, and the
//! thread that reconnects (connects, logs in again, then reads).

use std::sync::mpsc;
use std::thread;

use anyhow::{anyhow, Context};

use corecast::client::{Client, ClientError, ClientReceiver, ClientSender, TlsTrust};
use corecast::proto::ErrorCode;

use crate::args::Args;
use crate::Event;

/// Connects over plain TCP, or over TLS when any `--tls*` flag is given.
pub(crate) fn connect(args: &Args) -> anyhow::Result<Client> {
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
pub(crate) fn explain(e: ClientError) -> anyhow::Error {
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

/// Error codes after which reconnecting would be wrong: another session took over
/// (SESSION_REPLACED), the credentials are no longer good (UNAUTHORIZED), or the
/// application disconnected this player (DISCONNECTED).
pub(crate) fn ends_for_good(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::SessionReplaced | ErrorCode::Unauthorized | ErrorCode::Disconnected
    )
}

/// Reads connection `generation`'s messages until it ends.
pub(crate) fn spawn_server_reader(
    receiver: ClientReceiver,
    events: mpsc::Sender<Event>,
    generation: u64,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("server-reader".into())
        .spawn(move || read_server(receiver, &events, generation))
        .context("starting the server reader")?;
    Ok(())
}

fn read_server(mut receiver: ClientReceiver, events: &mpsc::Sender<Event>, generation: u64) {
    loop {
        match receiver.recv() {
            Ok(msg) => {
                if events.send(Event::Server(generation, msg)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = events.send(Event::Disconnected(generation, e));
                return;
            }
        }
    }
}

/// Why a reconnection attempt failed.
#[derive(Debug)]
pub(crate) struct AttemptFailed {
    pub(crate) why: String,
    /// Trying again would not help (the login was refused for good).
    pub(crate) for_good: bool,
}

/// One reconnection attempt on its own thread: connects, logs in again replacing the
/// old session if the server still has it, hands the sending half over
/// ([`Event::Connected`]), then reads the server's messages as connection `generation`.
pub(crate) fn spawn_reconnect(
    args: &Args,
    events: mpsc::Sender<Event>,
    generation: u64,
) -> anyhow::Result<()> {
    let args = args.clone();
    thread::Builder::new()
        .name("reconnect".into())
        .spawn(move || {
            let receiver = match reconnect(&args) {
                Ok((sender, receiver)) => {
                    if events
                        .send(Event::Connected(generation, Ok(sender)))
                        .is_err()
                    {
                        return;
                    }
                    receiver
                }
                Err(failed) => {
                    let _ = events.send(Event::Connected(generation, Err(failed)));
                    return;
                }
            };
            read_server(receiver, &events, generation);
        })
        .context("starting a reconnection")?;
    Ok(())
}

fn reconnect(args: &Args) -> Result<(ClientSender, ClientReceiver), AttemptFailed> {
    let retry = |e: anyhow::Error| AttemptFailed {
        why: format!("{e:#}"),
        for_good: false,
    };
    let token = args.token().map_err(retry)?;
    let mut client = connect(args).map_err(retry)?;
    if let Err(e) = client.login_with(&args.name, token.as_deref(), true) {
        let for_good = match &e {
            ClientError::Rejected { code, .. } | ClientError::ClosedAfterError { code, .. } => {
                ends_for_good(*code)
            }
            _ => false,
        };
        return Err(AttemptFailed {
            why: format!("logging in as {}: {}", args.name, explain(e)),
            for_good,
        });
    }
    client.split().map_err(|e| retry(explain(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_name_defaults_to_the_host() {
        assert_eq!(host_of("localhost:7878"), Some("localhost"));
        assert_eq!(host_of("127.0.0.1:7878"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:7878"), Some("::1"));
        assert_eq!(host_of(":7878"), None);
        assert_eq!(host_of("nohost"), None);
    }
}
