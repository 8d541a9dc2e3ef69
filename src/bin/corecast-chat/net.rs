//! The network side: connecting (plain TCP, or TLS when a `--tls*` flag is given), the
//! hints added to client errors, and the thread that reads the server's messages.

use std::sync::mpsc;
use std::thread;

use anyhow::{anyhow, Context};

use corecast::client::{Client, ClientError, ClientReceiver, TlsTrust};

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

pub(crate) fn spawn_server_reader(
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
