//! [`Client::split`] and its two halves, [`ClientSender`] and [`ClientReceiver`], which
//! can live on two threads, over plain TCP or TLS.

use std::time::{Duration, Instant};

use super::inbound::Inbound;
use super::transport::Writer;
use super::{Client, ClientError};
use crate::wire::frame;
use crate::wire::proto::{client_message, ClientMessage, ServerMessage};

impl Client {
    /// Splits the connection into a sending and a receiving half that can live on two
    /// threads, over plain TCP or TLS. Messages already received and bytes already
    /// buffered go to the receiving half. (It cannot fail any more; the `Result` is
    /// kept for callers written when TLS could not be split.)
    pub fn split(self) -> Result<(ClientSender, ClientReceiver), ClientError> {
        Ok((
            ClientSender {
                writer: self.writer,
            },
            ClientReceiver {
                inbound: self.inbound,
            },
        ))
    }
}

/// The sending half of a split [`Client`]: requests go out at once; their answers
/// arrive on the [`ClientReceiver`].
#[derive(Debug)]
pub struct ClientSender {
    writer: Writer,
}

impl ClientSender {
    /// Sends one `ClientMessage` frame.
    pub fn send(&mut self, msg: client_message::Data) -> Result<(), ClientError> {
        let bytes = frame::encode(&ClientMessage { data: Some(msg) });
        self.writer.write_all(&bytes)?;
        Ok(())
    }

    /// Closes the connection for both halves (after a TLS close_notify): a receiver
    /// blocked in [`ClientReceiver::recv`] returns [`ClientError::Closed`].
    pub fn close(&self) -> Result<(), ClientError> {
        Ok(self.writer.close()?)
    }
}

/// The receiving half of a split [`Client`].
#[derive(Debug)]
pub struct ClientReceiver {
    inbound: Inbound,
}

impl ClientReceiver {
    /// The next message, waiting as long as it takes; [`ClientError::Closed`] once the
    /// connection is closed ([`ClientError::ClosedAfterError`] if an error this
    /// receiver has not returned yet came last).
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.inbound.next(None)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ServerMessage, ClientError> {
        self.inbound.next(Some(Instant::now() + timeout))
    }
}
