//! TLS on the client port: loading the certificate chain and key (`--tls-cert`,
//! `--tls-key`) and the server handshake after accept (the blocking client's TLS is
//! `client::TlsTrust`). rustls with the `ring` provider throughout.
//!
//! The provider is named explicitly rather than taken from rustls' process default, so
//! that another crate enabling a second provider in the build cannot make it ambiguous.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("--tls-cert and --tls-key go together: {given} was given without {missing}")]
    Incomplete {
        /// The flag that was given.
        given: &'static str,
        /// The flag that is missing.
        missing: &'static str,
    },
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("cannot load a certificate chain from {path}: {reason}")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("cannot load a private key from {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the pair (for example a key that does not match the certificate)
    /// or a client's root certificate.
    #[error("TLS configuration rejected: {0}")]
    Rejected(#[from] rustls::Error),
    /// A client's server name is not a DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration for `--tls-cert` and `--tls-key`: `Ok(None)` when neither
/// is given, an error when only one is or when either file is unusable.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(TlsError::Incomplete {
                given: "--tls-cert",
                missing: "--tls-key",
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::Incomplete {
                given: "--tls-key",
                missing: "--tls-cert",
            })
        }
    };
    let cert_error = |reason: String| TlsError::Certificates {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE section".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)?;
    Ok(Some(Arc::new(config)))
}

/// Why a server handshake did not produce a stream.
#[derive(Debug)]
pub enum HandshakeEnd {
    /// Not completed within the time allowed.
    Timeout,
    /// The shard started shutting down.
    Shutdown,
    /// Not TLS, a TLS error, or the client went away.
    Failed(io::Error),
}

/// Runs the server side of a handshake on an accepted socket, for at most `limit`
/// and only until `shutdown` resolves. The socket is closed when it fails.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    limit: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<TlsStream<TcpStream>, HandshakeEnd> {
    let handshake = async { acceptor.accept(stream).await.map_err(HandshakeEnd::Failed) };
    let expire = async {
        glommio::timer::sleep(limit).await;
        Err(HandshakeEnd::Timeout)
    };
    let stop = async {
        shutdown.await;
        Err(HandshakeEnd::Shutdown)
    };
    future::or(handshake, future::or(expire, stop)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn neither_flag_means_plain() {
        assert!(server_config(None, None).unwrap().is_none());
    }

    #[test]
    fn one_flag_alone_is_an_error_naming_the_other() {
        let err = server_config(Some(Path::new("c.pem")), None).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let err = server_config(None, Some(Path::new("k.pem"))).unwrap_err();
        assert!(err.to_string().contains("--tls-cert"), "{err}");
    }

    #[test]
    fn a_generated_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let cert = write(dir.path(), "cert.pem", &cert);
        let key = write(dir.path(), "key.pem", &key);
        assert!(server_config(Some(&cert), Some(&key)).unwrap().is_some());
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let good_cert = write(dir.path(), "cert.pem", &cert);
        let good_key = write(dir.path(), "key.pem", &key);
        let junk = write(dir.path(), "junk.pem", "not a pem file\n");
        let missing = dir.path().join("missing.pem");
        let broken = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        for (cert, key) in [
            (&missing, &good_key),
            (&junk, &good_key),
            (&broken, &good_key),
            (&good_cert, &missing),
            (&good_cert, &junk),
            // A key is not a certificate and the other way round.
            (&good_key, &good_cert),
        ] {
            let result = server_config(Some(cert), Some(key));
            assert!(result.is_err(), "{cert:?} {key:?} loaded");
        }
        // A key that does not belong to the certificate.
        let (_, other_key) = pair();
        let other_key = write(dir.path(), "other.pem", &other_key);
        let err = server_config(Some(&good_cert), Some(&other_key)).unwrap_err();
        assert!(matches!(err, TlsError::Rejected(_)), "{err}");
    }
}
