//! [`ClientError`], what can go wrong on the client side, and the hints its messages
//! carry.

use std::io;
use std::path::PathBuf;

use crate::tls::TlsError;
use crate::wire::frame::FrameError;
use crate::wire::proto::ErrorCode;

/// What can go wrong on the client side.
///
/// Every variant's message includes what it wraps, and none reports it again as its
/// `source()`, so a chain printer (`anyhow`'s `{:#}`) prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(io::Error),
    /// Nothing arrived within the timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server closed the connection right after an error the caller had not been
    /// handed yet (`ServerMessage.error`, or a failed `LoginResponse`): SERVER_FULL,
    /// SERVER_SHUTTING_DOWN, UNAUTHORIZED, ... The message itself stays queued.
    #[error("the server closed the connection after error {}: {message}", .code.as_str_name())]
    ClosedAfterError {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server sent a frame that is not a `ServerMessage`.
    #[error("undecodable frame: {0}")]
    Decode(prost::DecodeError),
    /// The server sent an oversized frame.
    #[error("framing: {0}")]
    Frame(FrameError),
    /// A plain client's first bytes from the server are a TLS record (typically the
    /// alert a TLS server answers a non-TLS client with), not a frame.
    #[error(
        "the server answered with a TLS record (bytes {}), not a corecast frame: \
         this port speaks TLS, connect with TLS",
        hex(.header)
    )]
    TlsExpected {
        /// The four bytes that were read as a frame length.
        header: [u8; 4],
    },
    /// A response carried an error code other than NONE.
    #[error("server answered {code:?}: {message}")]
    Rejected {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The TLS configuration is unusable (a server name that is not a DNS name or an
    /// IP address, a root certificate rustls refuses).
    #[error("tls: {0}")]
    Tls(TlsError),
    /// A CA file given to [`TlsTrust::ca_file`](super::TlsTrust::ca_file) is unreadable or
    /// holds no certificate.
    #[error("cannot load CA certificates from {}: {reason}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// [`TlsTrust::system`](super::TlsTrust::system) found no usable root certificate.
    #[error("no usable system root certificates: {0}")]
    SystemRoots(String),
    /// The TLS handshake failed (the message says why, and what usually fixes it).
    #[error("TLS handshake with {server_name} failed: {error}{}", handshake_hint(.error))]
    Handshake {
        /// The name the server's certificate was checked against.
        server_name: String,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// The server closed the connection during the TLS handshake.
    #[error(
        "the server closed the connection during the TLS handshake \
         (a corecast server at --max-connections closes TLS clients that way)"
    )]
    HandshakeClosed,
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<prost::DecodeError> for ClientError {
    fn from(e: prost::DecodeError) -> Self {
        ClientError::Decode(e)
    }
}

impl From<TlsError> for ClientError {
    fn from(e: TlsError) -> Self {
        ClientError::Tls(e)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What usually fixes a handshake failure, appended to its message.
fn handshake_hint(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as Cert;
    match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            " (no trusted CA signed the server's certificate: trust the CA that did)"
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName)
        | rustls::Error::InvalidCertificate(Cert::NotValidForNameContext { .. }) => {
            " (the certificate does not carry the name the server was reached by: use a \
             name in its subjectAltName)"
        }
        // webpki's CaUsedAsEndEntity reaches rustls as an opaque `Other` error.
        rustls::Error::InvalidCertificate(Cert::Other(other))
            if format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            " (the server's certificate is a CA certificate, as `openssl req -x509` makes \
             by default: serve a leaf certificate signed by a CA, and trust the CA)"
        }
        rustls::Error::InvalidMessage(_) => {
            " (the server's answer is not TLS: does this port speak TLS?)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::wire::proto::ServerMessage;

    #[test]
    fn messages_do_not_repeat_their_cause() {
        // Each variant either includes its cause or returns it as the source, never
        // both: an error chain printer would print it twice.
        use std::error::Error as _;
        let errors = [
            ClientError::from(io::Error::other("boom")),
            ClientError::Frame(FrameError::TooLarge { len: 9, max: 8 }),
            ClientError::from(ServerMessage::decode(&[0xff_u8][..]).unwrap_err()),
            ClientError::from(TlsError::ServerName("x y".into())),
            ClientError::Handshake {
                server_name: "localhost".into(),
                error: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            },
        ];
        for e in errors {
            assert!(e.source().is_none(), "{e} also has a source");
        }
    }

    #[test]
    fn handshake_errors_carry_a_hint() {
        let unknown = ClientError::Handshake {
            server_name: "localhost".into(),
            error: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        };
        assert!(
            unknown.to_string().contains("trust the CA that did"),
            "{unknown}"
        );
    }
}
